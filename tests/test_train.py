"""The train step, checkpointing and the `python -m msunet.train` command end to end."""

import functools
import json

import jax
import numpy as np
import pytest

from msunet import train
from msunet.checkpointing import Checkpointer
from msunet.data import SyntheticMammograms, train_dataset
from tests.conftest import run_module


@pytest.fixture(scope="module")
def one_batch(smoke_config):
    source = SyntheticMammograms(4, 64, seed=1)
    return next(iter(train_dataset(smoke_config.data, source, batch_size=4, seed=0)))


def test_train_step_overfits_one_batch(smoke_config, one_batch):
    config = smoke_config.copy_and_resolve_references()
    config.optim.learning_rate = 1e-2
    state = train.create_train_state(config, jax.random.key(0))
    step = jax.jit(functools.partial(train.train_step, threshold=0.5))
    losses = []
    for _ in range(12):
        state, metrics, finite = step(state, one_batch)
        assert bool(finite)
        losses.append(float(metrics.compute()["loss"]))
    assert losses[-1] < 0.7 * losses[0]
    assert int(state.step) == 12


def test_train_step_updates_batch_norm_statistics(smoke_config, one_batch):
    state = train.create_train_state(smoke_config, jax.random.key(0))
    before = jax.tree.map(np.asarray, state.batch_stats)
    new_state, _, _ = jax.jit(functools.partial(train.train_step, threshold=0.5))(state, one_batch)
    changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), before, new_state.batch_stats)
    # Every variance moves. A mean may not: the head's input is a BatchNorm output, whose
    # per-channel batch mean is zero up to rounding, and so is the head conv's.
    assert all(stats["var"] for stats in _batch_norms(changed))
    assert sum(stats["mean"] for stats in _batch_norms(changed)) >= len(_batch_norms(changed)) - 1


def _batch_norms(tree):
    """The {"mean", "var"} leaves of every BatchNorm in a batch_stats tree."""
    if set(tree) == {"mean", "var"}:
        return [tree]
    return [stats for child in tree.values() for stats in _batch_norms(child)]


def test_checkpoint_save_restore_gives_identical_state(smoke_config, one_batch, tmp_path):
    state = train.create_train_state(smoke_config, jax.random.key(0))
    state, _, _ = jax.jit(functools.partial(train.train_step, threshold=0.5))(state, one_batch)
    source = SyntheticMammograms(8, 64)
    iterator = iter(train_dataset(smoke_config.data, source, batch_size=4, seed=0))
    next(iterator)
    checkpointer = Checkpointer(tmp_path)
    checkpointer.save(1, state, iterator, {"note": "x"})
    checkpointer.save_best(1, state)
    expected_next = next(iterator)
    checkpointer.wait()

    fresh = train.create_train_state(smoke_config, jax.random.key(5))
    resumed_iterator = iter(train_dataset(smoke_config.data, source, batch_size=4, seed=0))
    restored = Checkpointer(tmp_path).restore(fresh, data_iterator=resumed_iterator)
    assert restored.step == 1 and restored.meta == {"note": "x"}
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored.state), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(next(resumed_iterator)["image"], expected_next["image"])
    best = Checkpointer(tmp_path).restore(fresh, kind="best")
    np.testing.assert_array_equal(jax.tree.leaves(best.state.params)[0],
                                  jax.tree.leaves(state.params)[0])


def test_missing_checkpoint_is_a_clear_error(smoke_config, tmp_path):
    state = train.create_train_state(smoke_config, jax.random.key(0))
    with pytest.raises(FileNotFoundError, match="no best checkpoint"):
        Checkpointer(tmp_path).restore(state, kind="best")


def test_train_command_runs_logs_checkpoints_and_resumes(tmp_path):
    workdir = tmp_path / "run"
    args = ["--config", "configs/smoke.py", "--workdir", str(workdir)]
    first = run_module("msunet.train", *args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "step 8/8" in first.stdout and "ETA" in first.stdout and "steps/s" in first.stdout
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["4", "8"]
    assert [p.name for p in (workdir / "best").iterdir()]
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert {"step", "train_loss", "epoch"} <= set(rows[0])
    assert any({"val_loss", "val_iou", "val_accuracy"} <= set(r) for r in rows)
    assert json.loads((workdir / "config.json").read_text())["data"]["image_size"] == 64

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(workdir / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("val_loss")] == [4, 8]

    second = run_module("msunet.train", *args, "--config.train.num_steps=10")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from step 8" in second.stdout
    assert "step 10/10" in second.stdout
    steps = [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text()
             .splitlines()]
    assert max(steps) == 10 and steps == sorted(steps)


def test_config_typo_fails_with_a_suggestion_and_no_traceback(tmp_path):
    result = run_module("msunet.train", "--config", "configs/smoke.py", "--workdir",
                        str(tmp_path), "--config.train.num_stpes=5")
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") and "num_steps" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_best_metric_is_refused_before_training(smoke_config, tmp_path):
    config = smoke_config.copy_and_resolve_references()
    config.train.best_metric = "fg_iuo"
    with pytest.raises(ValueError, match=r"train.best_metric must be one of .*'iou'"):
        train.check_config(config, tmp_path)


@pytest.mark.parametrize("patience", [1, 3])
def test_early_stopping_waits_exactly_patience_validations(smoke_config, patience):
    settings = smoke_config.train.early_stopping.copy_and_resolve_references()
    settings.patience = patience
    stopper = train.early_stopper(settings).update(0.5)
    for _ in range(patience):
        assert not stopper.should_stop
        stopper = stopper.update(0.6)
    assert stopper.should_stop


def test_discarded_steps_leave_the_logged_metrics_alone(smoke_config, one_batch):
    state = train.create_train_state(smoke_config, jax.random.key(0))
    step = jax.jit(functools.partial(train.train_step, threshold=0.5))
    _, good, good_finite = step(state, one_batch)
    poisoned = state.replace(params=jax.tree.map(lambda p: p * np.nan, state.params))
    kept, bad, bad_finite = step(poisoned, one_batch)
    assert bool(good_finite) and not bool(bad_finite)
    merged = good.merge(bad).compute()
    assert float(merged["loss"]) == pytest.approx(float(good.compute()["loss"]))
    assert float(merged["accuracy"]) == pytest.approx(float(good.compute()["accuracy"]))


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


def test_workdir_of_another_shape_is_refused(smoke_config, tmp_path):
    (tmp_path / train.CONFIG_FILE).write_text(smoke_config.to_json())
    other = smoke_config.copy_and_resolve_references()
    other.data.image_size = 96
    with pytest.raises(ValueError, match="data.image_size: 64 in the workdir, 96 now"):
        train.check_config(other, tmp_path)


def test_bfloat16_compute_trains_with_float32_params_and_loss(smoke_config, one_batch):
    config = smoke_config.copy_and_resolve_references()
    config.model.dtype = "bfloat16"
    state = train.create_train_state(config, jax.random.key(0))
    step = jax.jit(functools.partial(train.train_step, threshold=0.5))
    losses = []
    for _ in range(8):
        state, metrics, finite = step(state, one_batch)
        losses.append(metrics.compute()["loss"])
    assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(state.params))
    assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(state.batch_stats))
    assert losses[0].dtype == np.float32 and bool(finite)
    assert float(losses[-1]) < float(losses[0])
