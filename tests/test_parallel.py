"""Data parallelism: 4 host devices train like 1, with replicated params (one process per device
count, since it is fixed when JAX starts: tests/parallel_worker.py)."""

import json
import os
import subprocess
import sys

import numpy as np

from tests.conftest import REPO


def run_on(devices: int) -> dict:
    env = dict(os.environ, XLA_FLAGS=os.environ.get("XLA_FLAGS", "")
               + f" --xla_force_host_platform_device_count={devices}")
    result = subprocess.run([sys.executable, "-m", "tests.parallel_worker"], cwd=REPO, env=env,
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
