"""Exact resume after SIGKILL, clean stop on SIGTERM, and the non-finite guard."""

import functools
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msunet import train
from msunet.checkpointing import Checkpointer
from tests.conftest import REPO, run_module

SMOKE = ["--config", "configs/smoke.py", "--config.train.num_steps=16",
         "--config.train.checkpoint_every=4", "--config.train.eval_every=8"]


def start_training(workdir, *extra):
    return subprocess.Popen([sys.executable, "-m", "msunet.train", *SMOKE, *extra,
                             "--workdir", str(workdir)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)


def signal_at(process, step, signum):
    """Send `signum` once the progress line of `step` (or later) is printed; return stdout."""
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("step ") and int(line.split()[1].split("/")[0]) >= step:
            process.send_signal(signum)
            break
    lines.extend(process.stdout)
    process.wait(timeout=300)
    return "".join(lines)


def final_params(config, workdir):
    abstract = jax.eval_shape(lambda: train.create_train_state(config, jax.random.key(0)))
    restored = Checkpointer(workdir).restore(abstract)
    assert restored.step == 16
    return [np.asarray(leaf) for leaf in jax.tree.leaves(restored.state)]


def test_sigkill_then_rerun_gives_bit_identical_params(smoke_config, tmp_path):
    straight = run_module("msunet.train", *SMOKE, "--workdir", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr[-2000:]

    killed = start_training(tmp_path / "killed")
    signal_at(killed, 10, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    resumed = run_module("msunet.train", *SMOKE, "--workdir", str(tmp_path / "killed"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # The kill may land while step 8 is still being written (saves are asynchronous): then the
    # half-written step is ignored and the run resumes from step 4.
    resumed_from = int(resumed.stdout.split("resumed from step ")[1].split()[0])
    assert resumed_from in (4, 8)

    for a, b in zip(final_params(smoke_config, tmp_path / "straight"),
                    final_params(smoke_config, tmp_path / "killed"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    process = start_training(tmp_path, "--config.train.num_steps=1000")
    output = signal_at(process, 2, signal.SIGTERM)
    assert process.returncode == 128 + signal.SIGTERM
    assert "stopped by SIGTERM at step" in output and "Re-run the same command" in output
    stopped_at = int(output.split("stopped by SIGTERM at step ")[1].split(";")[0])
    assert (tmp_path / "checkpoints" / str(stopped_at)).is_dir()


def test_non_finite_step_leaves_the_state_unchanged(smoke_config):
    state = train.create_train_state(smoke_config, jax.random.key(0))
    batch = {"image": jnp.full((2, 64, 64, 1), jnp.nan), "mask": jnp.zeros((2, 64, 64, 1))}
    before = [np.asarray(leaf) for leaf in jax.tree.leaves(state)]
    new_state, _, finite = jax.jit(functools.partial(train.train_step, threshold=0.5))(state, batch)
    assert not bool(finite)
    for a, b in zip(before, jax.tree.leaves(new_state), strict=True):
        np.testing.assert_array_equal(a, b)


def test_diverging_run_stops_naming_the_step(tmp_path):
    result = run_module("msunet.train", *SMOKE, "--config.optim.learning_rate=1e30",
                        "--workdir", str(tmp_path))
    assert result.returncode != 0
    assert "non-finite loss or gradient at step" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("override", ["--config.model.name=unet", "--config.data.image_size=96"])
def test_resuming_with_another_shape_is_refused(tmp_path, override):
    (tmp_path / "config.json").write_text(
        __import__("configs.smoke", fromlist=["get_config"]).get_config().to_json())
    result = run_module("msunet.train", *SMOKE, override, "--workdir", str(tmp_path))
    assert result.returncode != 0 and "another shape" in result.stderr
