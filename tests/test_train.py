"""The `python -m msunet.train` command: it trains, logs, checkpoints and resumes; a bad command
line or config is one `error: ...` line; a run killed with SIGKILL resumes bit-identically and
one sent SIGTERM saves and exits cleanly. The training library itself is test_training.py."""

import json
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from msunet import train
from msunet.state import abstract_train_state
from msunet.training import train_and_evaluate
from msunet.workdir import Workdir
from tests.conftest import REPO, run_module

# U-Net: the command's behaviour does not depend on the model, and U-Net compiles several times
# faster than MultiResUNet (which smoke_run trains in process).
UNET = "--config.model.name=unet"
SMOKE = ["--config", "configs/smoke.py", UNET, "--config.train.num_steps=16",
         "--config.train.checkpoint_every=4", "--config.train.eval_every=8"]


# --- one-line errors ---------------------------------------------------------------------------

def test_config_typo_fails_with_a_suggestion_and_no_traceback(tmp_path):
    result = run_module("msunet.train", "--config", "configs/smoke.py", "--workdir",
                        str(tmp_path), "--config.train.num_stpes=5")
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") and "num_steps" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("override, message", [
    ("--config.data.image_size=60", "multiple of 16"),
    ("--config.model.name=vnet", "unknown model.name"),
])
def test_bad_config_values_fail_with_clear_errors(tmp_path, override, message):
    result = run_module("msunet.train", "--config", "configs/smoke.py", "--workdir",
                        str(tmp_path), override)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("override", ["--config.model.name=unet", "--config.data.image_size=96"])
def test_resuming_with_another_shape_is_refused(smoke_config, tmp_path, monkeypatch, override):
    """In process: `main` turns the workdir's refusal into one error line (no training)."""
    Workdir(tmp_path).save_config(smoke_config)
    argv = ["train", "--config", str(REPO / "configs" / "smoke.py"), override,
            "--workdir", str(tmp_path)]
    monkeypatch.setenv("MSUNET_KEEP_FREED_MEMORY", "0")  # leave this process's malloc alone
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv)
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "another shape" in message


# --- SIGKILL and SIGTERM -----------------------------------------------------------------------

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
    checkpointer = Workdir(workdir).checkpointer()
    try:
        restored = checkpointer.restore(abstract_train_state(config))
    finally:
        checkpointer.close()
    assert restored.step == 16
    return [np.asarray(leaf) for leaf in jax.tree.leaves(restored.state)]


def test_a_killed_train_command_reruns_to_the_uninterrupted_params_and_logs_as_a_run(
        smoke_config, tmp_path):
    """SIGKILL mid-run, then the same command again: the rerun resumes, prints progress, and
    leaves the workdir a run leaves (checkpoints, best, TensorBoard, metrics.jsonl, config) with
    the very params of an uninterrupted run. One killed run serves both checks: each command
    costs a process start and a compile."""
    # The uninterrupted run, in process: the same config as SMOKE, the same code.
    config = smoke_config.copy_and_resolve_references()
    config.train.num_steps, config.train.checkpoint_every, config.train.eval_every = 16, 4, 8
    config.model.name = "unet"
    assert train_and_evaluate(config, tmp_path / "straight")["step"] == 16

    workdir = tmp_path / "killed"
    killed = start_training(workdir)
    signal_at(killed, 10, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    resumed = run_module("msunet.train", *SMOKE, "--workdir", str(workdir))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # The kill may land while step 8 is still being written (saves are asynchronous): then the
    # half-written step is ignored and the run resumes from step 4.
    resumed_from = int(resumed.stdout.split("resumed from step ")[1].split()[0])
    assert resumed_from in (4, 8)
    assert "step 16/16" in resumed.stdout and "ETA" in resumed.stdout
    assert "steps/s" in resumed.stdout
    for a, b in zip(final_params(config, tmp_path / "straight"), final_params(config, workdir),
                    strict=True):
        np.testing.assert_array_equal(a, b)

    run = Workdir(workdir)
    assert sorted(int(p.name) for p in run.checkpoints_dir.iterdir()) == [12, 16]
    assert [p.name for p in run.best_dir.iterdir()]
    rows = [json.loads(line) for line in run.metrics_file.read_text().splitlines()]
    assert {"step", "train_loss", "epoch"} <= set(rows[0])
    assert any({"val_loss", "val_fg_iou", "val_accuracy"} <= set(r) for r in rows)
    train_steps = [r["step"] for r in rows if "train_loss" in r]
    assert train_steps == sorted(set(train_steps)) and train_steps[-1] == 16  # no repeats
    assert json.loads(run.config_file.read_text())["data"]["image_size"] == 64

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run.tensorboard_dir))
    events.Reload()
    assert {e.step for e in events.Scalars("val_loss")} == {8, 16}

    # A finished run asked for more steps goes on from its last checkpoint.
    config.train.num_steps = 18
    assert train_and_evaluate(config, workdir)["step"] == 18


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    process = start_training(tmp_path, "--config.train.num_steps=1000")
    output = signal_at(process, 2, signal.SIGTERM)
    assert process.returncode == 128 + signal.SIGTERM
    assert "stopped by SIGTERM at step" in output and "Re-run the same command" in output
    stopped_at = int(output.split("stopped by SIGTERM at step ")[1].split(";")[0])
    assert (Workdir(tmp_path).checkpoints_dir / str(stopped_at)).is_dir()
