"""Data parallelism with `jax.sharding`: one Mesh over every device, batches split on its
'data' axis, parameters and optimiser state replicated.

The same jitted train step runs on 1 or N devices (and N hosts): XLA partitions it from the
input shardings, so BatchNorm statistics and the loss are computed over the global batch and the
result equals a single-device run up to float rounding.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def initialize(distributed: bool) -> None:
    """Join the multi-host job (coordinator and process ids from the environment) if asked."""
    if distributed:
        jax.distributed.initialize()


def make_mesh() -> Mesh:
    """A 1-D mesh over all devices of all processes, partitioned by XLA (GSPMD, "Auto" axes).

    With jax's default explicit axes every reshape that merges the batch dimension would need
    its output sharding spelled out; the model's layers are written sharding-agnostic.
    """
    return jax.make_mesh((jax.device_count(),), (DATA_AXIS,),
                         axis_types=(jax.sharding.AxisType.Auto,))


def per_process_batch_size(global_batch_size: int, mesh: Mesh, name: str) -> int:
    """The rows each process loads; the global batch must split evenly over the devices."""
    devices = mesh.devices.size
    if global_batch_size % devices:
        raise ValueError(f"{name}={global_batch_size} does not divide over {devices} devices; "
                         f"use a multiple of {devices}")
    return global_batch_size // jax.process_count()


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place every leaf of `tree` on all devices of `mesh`."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assemble each process's rows into global arrays split over the 'data' axis."""
    sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    return {key: jax.make_array_from_process_local_data(sharding, np.asarray(value))
            for key, value in batch.items()}
