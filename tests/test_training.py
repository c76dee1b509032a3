"""The training library (msunet.training): the train and eval steps, early stopping, the config
checks, the stop signal and the Trainer, in process."""

import functools
import json
import signal
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msunet.data import SyntheticMammograms, eval_dataset, train_dataset
from msunet.data.pipeline import pad_batch
from msunet.losses import per_example_bce, per_example_bce_dice
from msunet.metrics import TRAIN_METRICS
from msunet.state import create_train_state
from msunet.training import (
    StopRequest,
    Trainer,
    check_config,
    early_stopper,
    eval_step,
    evaluate_metrics,
    train_and_evaluate,
    train_step,
)
from msunet.workdir import EarlyStoppingState, Workdir


@pytest.fixture(scope="module")
def one_batch(smoke_config):
    source = SyntheticMammograms(4, 64, seed=1)
    return next(iter(train_dataset(smoke_config.data, source, batch_size=4, seed=0)))


@pytest.fixture(scope="module")
def unet_config(smoke_config):
    """The smoke recipe with U-Net: the step's mechanics are the model's, and U-Net compiles
    several times faster than MultiResUNet (which smoke_run and the CLI tests train)."""
    config = smoke_config.copy_and_resolve_references()
    config.model.name = "unet"
    return config


@pytest.fixture(scope="module")
def bce_step():
    """One jitted BCE train step, compiled once for this module's tests of the same shapes."""
    return jax.jit(functools.partial(train_step, loss_fn=per_example_bce, threshold=0.5))


def _batch_norms(tree):
    """The {"mean", "var"} leaves of every BatchNorm in a batch_stats tree."""
    if set(tree) == {"mean", "var"}:
        return [tree]
    return [stats for child in tree.values() for stats in _batch_norms(child)]


# --- the train step ----------------------------------------------------------------------------

@pytest.mark.parametrize("loss_fn, factor", [(per_example_bce, 0.7), (per_example_bce_dice, 1.0)])
def test_train_step_overfits_one_batch(unet_config, one_batch, loss_fn, factor):
    config = unet_config.copy_and_resolve_references()
    config.optim.learning_rate = 1e-2
    state = create_train_state(config, jax.random.key(0))
    step = jax.jit(functools.partial(train_step, loss_fn=loss_fn, threshold=0.5))
    losses = []
    for _ in range(12):
        state, metrics, finite = step(state, one_batch)
        assert bool(finite)
        losses.append(float(metrics.compute()["loss"]))
    assert losses[-1] < factor * losses[0], losses
    assert int(state.step) == 12


def test_train_step_updates_batch_norm_statistics(unet_config, one_batch, bce_step):
    state = create_train_state(unet_config, jax.random.key(0))
    before = jax.tree.map(np.asarray, state.batch_stats)
    new_state, _, _ = bce_step(state, one_batch)
    changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), before, new_state.batch_stats)
    # Every variance moves. A mean may not: the head's input is a BatchNorm output, whose
    # per-channel batch mean is zero up to rounding, and so is the head conv's.
    assert all(stats["var"] for stats in _batch_norms(changed))
    assert sum(stats["mean"] for stats in _batch_norms(changed)) >= len(_batch_norms(changed)) - 1


def test_non_finite_step_leaves_the_state_unchanged(unet_config, one_batch, bce_step):
    state = create_train_state(unet_config, jax.random.key(0))
    poisoned = state.replace(params=jax.tree.map(lambda p: p.at[(0,) * p.ndim].set(jnp.nan),
                                                 state.params))
    before = [np.asarray(leaf) for leaf in jax.tree.leaves(poisoned)]
    new_state, _, finite = bce_step(poisoned, one_batch)
    assert not bool(finite)
    for a, b in zip(before, jax.tree.leaves(new_state), strict=True):
        np.testing.assert_array_equal(a, b)


def test_discarded_steps_leave_the_logged_metrics_alone(unet_config, one_batch, bce_step):
    state = create_train_state(unet_config, jax.random.key(0))
    _, good, good_finite = bce_step(state, one_batch)
    poisoned = state.replace(params=jax.tree.map(lambda p: p * np.nan, state.params))
    kept, bad, bad_finite = bce_step(poisoned, one_batch)
    assert bool(good_finite) and not bool(bad_finite)
    merged = good.merge(bad).compute()
    assert float(merged["loss"]) == pytest.approx(float(good.compute()["loss"]))
    assert float(merged["accuracy"]) == pytest.approx(float(good.compute()["accuracy"]))


def test_bfloat16_compute_trains_with_float32_params_and_loss(unet_config, one_batch):
    config = unet_config.copy_and_resolve_references()
    config.model.dtype = "bfloat16"
    state = create_train_state(config, jax.random.key(0))
    step = jax.jit(functools.partial(train_step, threshold=0.5))
    losses = []
    for _ in range(8):
        state, metrics, finite = step(state, one_batch)
        losses.append(metrics.compute()["loss"])
    assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(state.params))
    assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(state.batch_stats))
    assert losses[0].dtype == np.float32 and bool(finite)
    assert float(losses[-1]) < float(losses[0])


# --- the eval step -----------------------------------------------------------------------------

def test_eval_step_pools_a_split_and_ignores_padding(smoke_config):
    state = create_train_state(smoke_config, jax.random.key(0))
    eval_fn = jax.jit(functools.partial(eval_step, threshold=0.5))
    batches = list(eval_dataset(smoke_config.data, SyntheticMammograms(6, 64, split="val"), 4))
    assert [len(batch["image"]) for batch in batches] == [4, 2]
    pooled = evaluate_metrics(eval_fn, state, batches, batch_size=4)
    assert set(pooled) == {"loss", *TRAIN_METRICS}
    assert all(isinstance(value, float) for value in pooled.values())
    merged = eval_fn(state, pad_batch(batches[0], 4)).merge(
        eval_fn(state, pad_batch(batches[1], 4))).compute()
    for name, value in pooled.items():
        np.testing.assert_allclose(value, float(merged[name]), rtol=1e-6)
    # Whatever fills the padding rows, they are not scored.
    junk = pad_batch(batches[1], 4)
    junk["image"][2:] = batches[0]["image"][:2]
    junk["mask"][2:] = 1
    tail = eval_fn(state, junk).compute()
    clean = eval_fn(state, pad_batch(batches[1], 4)).compute()
    for name in pooled:
        np.testing.assert_allclose(float(tail[name]), float(clean[name]), rtol=1e-6)


def test_an_empty_evaluation_split_is_an_error():
    with pytest.raises(ValueError, match="the evaluation split is empty"):
        evaluate_metrics(eval_step, None, [], batch_size=4)


# --- early stopping ----------------------------------------------------------------------------

@pytest.mark.parametrize("patience", [1, 3])
def test_early_stopping_waits_exactly_patience_validations(smoke_config, patience):
    settings = smoke_config.train.early_stopping.copy_and_resolve_references()
    settings.patience = patience
    stopper = early_stopper(settings).update(0.5)
    for _ in range(patience):
        assert not stopper.should_stop
        stopper = stopper.update(0.6)
    assert stopper.should_stop


def test_early_stopping_continues_from_the_saved_counters(smoke_config):
    settings = smoke_config.train.early_stopping.copy_and_resolve_references()
    settings.patience = 3
    saved = EarlyStoppingState(best_metric=0.5, patience_count=1, should_stop=False)
    stopper = early_stopper(settings, saved)
    assert (stopper.best_metric, stopper.patience_count) == (0.5, 1)
    stopper = stopper.update(0.6)  # the second validation without a gain
    assert not stopper.should_stop
    assert stopper.update(0.6).should_stop, "the third one stops, as in an uninterrupted run"
    assert not early_stopper(settings, saved).update(0.4).update(0.6).should_stop


# --- config checks -----------------------------------------------------------------------------

def test_the_smoke_config_passes(smoke_config):
    check_config(smoke_config)


@pytest.mark.parametrize("field, value, message", [
    ("data.image_size", 60, "data.image_size must be a positive multiple of 16"),
    ("data.patch_size", 24, "data.patch_size must be a multiple of 16"),
    ("data.patch_size", 128, "no larger than data.image_size=64"),
    ("model.name", "vnet", "unknown model.name 'vnet'"),
    ("data.source", "kaggle", "unknown data.source 'kaggle'"),
    ("train.loss", "focal", "unknown train.loss 'focal'"),
    ("train.batch_size", 0, "train.batch_size must be at least 1, got 0"),
    ("train.early_stopping.patience", 0, "train.early_stopping.patience must be at least 1"),
])
def test_a_config_that_cannot_work_is_refused_naming_the_field(smoke_config, field, value,
                                                               message):
    config = smoke_config.copy_and_resolve_references()
    *parents, name = field.split(".")
    section = config
    for parent in parents:
        section = section[parent]
    section[name] = value
    with pytest.raises(ValueError, match=message):
        check_config(config)


def test_unknown_best_metric_is_refused_before_training(smoke_config):
    config = smoke_config.copy_and_resolve_references()
    config.train.best_metric = "fg_iuo"
    with pytest.raises(ValueError, match=r"train.best_metric must be one of .*'fg_iou'"):
        check_config(config)


def test_a_bad_config_is_refused_before_the_workdir_is_touched(smoke_config, tmp_path):
    config = smoke_config.copy_and_resolve_references()
    config.data.image_size = 60
    with pytest.raises(ValueError, match="multiple of 16"):
        Trainer(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# --- the stop signal ---------------------------------------------------------------------------

def test_stop_request_turns_signals_into_a_flag_and_restores_the_handlers():
    previous = signal.getsignal(signal.SIGTERM)
    with StopRequest() as request:
        if threading.current_thread() is threading.main_thread():
            assert signal.getsignal(signal.SIGTERM) == request._handle
        assert request.signal is None
        request._handle(signal.SIGTERM, None)
        assert request.signal == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == previous
    interrupted = StopRequest()
    interrupted._handle(signal.SIGINT, None)  # the first Ctrl-C asks to stop after the step
    with pytest.raises(KeyboardInterrupt):
        interrupted._handle(signal.SIGINT, None)  # the second interrupts at once


# --- the Trainer on a trained workdir ----------------------------------------------------------

def test_a_run_writes_its_workdir(smoke_run, smoke_config):
    run = Workdir(smoke_run)
    assert sorted(p.name for p in run.checkpoints_dir.iterdir()) == ["4", "8"]
    assert [p.name for p in run.best_dir.iterdir()]
    assert list(run.tensorboard_dir.glob("events.out.tfevents.*"))
    assert run.curves_file.is_file()
    assert not run.splits_file.exists(), "synthetic splits come from seeds, not a saved split"
    assert run.load_config().model.to_dict() == smoke_config.model.to_dict()
    rows = [json.loads(line) for line in run.metrics_file.read_text().splitlines()]
    assert {"step", "train_loss", "epoch", "steps_per_second"} <= set(rows[0])
    assert {f"train_{name}" for name in TRAIN_METRICS} <= set(rows[0])
    validations = [row for row in rows if "val_loss" in row]
    assert [row["step"] for row in validations] == [4, 8]
    assert {f"val_{name}" for name in ("loss", *TRAIN_METRICS)} <= set(validations[0])
    assert not any("val_iou" in row or "train_iou" in row for row in rows), "renamed fg_iou"


def test_a_finished_run_resumes_to_its_summary(smoke_config, copy_run, capsys):
    run = Workdir(copy_run)
    logged = run.metrics_file.read_text()
    trainer = Trainer(smoke_config, run)
    assert trainer.step == 8 and "resumed from step 8" in capsys.readouterr().out
    summary = trainer.run()
    assert (summary["step"], summary["stopped_early"], summary["skipped_steps"],
            summary["signal"]) == (8, False, [], None)
    best = summary["best"]
    assert best["step"] in (4, 8) and set(best["metrics"]) == {"loss", *TRAIN_METRICS}
    assert best["value"] == best["metrics"][smoke_config.train.best_metric]
    row = next(json.loads(line) for line in logged.splitlines()
               if json.loads(line)["step"] == best["step"] and "val_loss" in line)
    for name, value in best["metrics"].items():
        assert row[f"val_{name}"] == pytest.approx(value)
    assert run.metrics_file.read_text() == logged, "nothing trained or logged again"


def test_a_run_compiles_each_step_once(unet_config, tmp_path):
    """The donated state and every batch keep their signature: no silent recompiles (each
    costs a compile and, with the kept heap, its memory)."""
    config = unet_config.copy_and_resolve_references()
    config.train.num_steps, config.train.eval_every, config.train.checkpoint_every = 2, 2, 2
    for steps in (2, 4):  # from scratch, then resumed from the restored checkpoint
        config.train.num_steps = steps
        trainer = Trainer(config, tmp_path)
        assert trainer.run()["step"] == steps
        assert (trainer.train_fn.num_compiled, trainer.eval_fn.num_compiled) == (1, 1)


def test_diverging_run_stops_naming_the_step(unet_config, tmp_path):
    """Learning rate 1e30: step 1 is finite (weights ~1e30), step 2 overflows. The run stops
    there, naming the step, with step 1's checkpoint as the last good one."""
    config = unet_config.copy_and_resolve_references()
    config.optim.learning_rate = 1e30
    config.train.num_steps = 5
    config.train.log_every = config.train.checkpoint_every = 1
    config.train.eval_every = 5
    with pytest.raises(FloatingPointError, match=r"non-finite loss or gradient at step 2; the "
                                                 r"run stopped and the latest checkpoint "
                                                 r"\(step 1\) is the last good one"):
        train_and_evaluate(config, tmp_path)
    checkpointer = Workdir(tmp_path).checkpointer()
    assert checkpointer.latest_step() == 1
    checkpointer.close()
