"""The worker of tests/test_parallel.py: four smoke train steps on every (host) device XLA was
given, in a process of its own since the device count is fixed when JAX starts:

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python -m tests.parallel_worker

prints one JSON line: the device count, the four losses, whether the params stayed replicated,
and the error for a global batch of 6 (None when it divides over the devices).
"""

from __future__ import annotations

import functools
import json

import jax

from configs.smoke import get_config
from msunet import data, parallel
from msunet.state import create_train_state
from msunet.training import train_step


def measure() -> dict:
    """Four data-parallel train steps of the smoke config on a mesh over all devices."""
    config = get_config()
    config.model.name = "unet"  # the mesh code is the model's; U-Net compiles faster
    config.data.num_threads = 1
    mesh = parallel.make_mesh()
    state = parallel.replicate(create_train_state(config, jax.random.key(0)), mesh)
    source = data.build_source(config.data, "train")
    batches = iter(data.train_dataset(config.data, source, config.train.batch_size, seed=0))
    step = jax.jit(functools.partial(train_step, threshold=0.5), donate_argnums=0)
    losses = []
    for _ in range(4):
        state, metrics, _ = step(state, parallel.shard_batch(next(batches), mesh))
        losses.append(float(metrics.compute()["loss"]))
    replicated = all(leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(state.params))
    try:
        parallel.per_process_batch_size(6, mesh, "train.batch_size")
        error = None
    except ValueError as exception:
        error = str(exception)
    return {"devices": jax.device_count(), "losses": losses, "replicated": replicated,
            "error": error}


def main() -> None:
    print(json.dumps(measure()))


if __name__ == "__main__":
    main()
