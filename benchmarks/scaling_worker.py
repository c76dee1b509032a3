"""One data-parallel measurement of `benchmarks.scaling`, in a process of its own (JAX fixes the
host device count when it starts):

    python -m benchmarks.scaling_worker DEVICES SIZE WIDTH BATCH STEPS

prints one JSON line: device count, platform, compile time, median step time, images/s.
"""

from __future__ import annotations

import functools
import json
import sys
import time

import jax
import numpy as np

from msunet import parallel
from msunet.config import base_config
from msunet.state import create_train_state
from msunet.training import train_step


def measure(devices: int, size: int, width: int, batch: int, steps: int) -> dict[str, float]:
    """Train-step throughput of MultiResUNet on the first `devices` devices, one global batch."""
    config = base_config()
    config.data.image_size, config.model.base_filters, config.train.batch_size = size, width, batch
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:devices]), (parallel.DATA_AXIS,))
    parallel.per_process_batch_size(batch, mesh, "batch")
    state = parallel.replicate(create_train_state(config, jax.random.key(0)), mesh)
    rng = np.random.default_rng(0)
    batch_np = {"image": rng.integers(0, 256, (batch, size, size, 1), dtype=np.uint8),
                "mask": (rng.uniform(size=(batch, size, size, 1)) < 0.05).astype(np.uint8)}
    sharded = parallel.shard_batch(batch_np, mesh)
    step = jax.jit(functools.partial(train_step, threshold=0.5), donate_argnums=0)
    start = time.perf_counter()
    state, _, _ = step(state, sharded)
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        state, _, _ = step(state, sharded)
        jax.block_until_ready(state)
        times.append(time.perf_counter() - start)
    median = sorted(times)[len(times) // 2]
    return {"devices": devices, "platform": jax.devices()[0].platform, "compile_s": compile_s,
            "step_s_median": median, "images_per_s": batch / median}


if __name__ == "__main__":
    print(json.dumps(measure(*map(int, sys.argv[1:6]))))
