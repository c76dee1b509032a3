"""Data parallelism: 4 host devices train like 1, with replicated params (subprocesses, since
the device count is fixed when JAX starts)."""

import json
import os
import subprocess
import sys

import numpy as np

from tests.conftest import REPO

SCRIPT = """
import json, sys
import jax
from msunet import data, parallel, train
from configs.smoke import get_config

config = get_config()
config.data.num_threads = 1
mesh = parallel.make_mesh()
state = parallel.replicate(train.create_train_state(config, jax.random.key(0)), mesh)
source = data.build_source(config.data, "train")
batches = iter(data.train_dataset(config.data, source, config.train.batch_size, seed=0))
step = jax.jit(lambda s, b: train.train_step(s, b, threshold=0.5), donate_argnums=0)
losses = []
for _ in range(4):
    state, metrics, _ = step(state, parallel.shard_batch(next(batches), mesh))
    losses.append(float(metrics.compute()["loss"]))
replicated = all(leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(state.params))
try:
    parallel.per_process_batch_size(6, mesh, "train.batch_size")
    error = None
except ValueError as e:
    error = str(e)
print(json.dumps({"devices": jax.device_count(), "losses": losses, "replicated": replicated,
                  "error": error}))
"""


def run_on(devices: int) -> dict:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_four_devices_follow_the_single_device_loss_trajectory():
    one, four = run_on(1), run_on(4)
    assert (one["devices"], four["devices"]) == (1, 4)
    assert four["replicated"]
    np.testing.assert_allclose(four["losses"], one["losses"], rtol=1e-4)
    assert one["error"] is None
    assert four["error"] == ("train.batch_size=6 does not divide over 4 devices; use a "
                             "multiple of 4")
