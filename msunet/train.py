"""Training and validation: `python -m msunet.train --config configs/default.py --workdir DIR`.

Reads top to bottom: model -> train state -> train/eval steps (pure, jit-compiled) ->
`train_and_evaluate`, the loop that feeds batches, logs, checkpoints and stops early on the
validation loss. The test split is never read here.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import pathlib
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags, logging
from flax.training import early_stopping, train_state
from ml_collections import config_flags

from msunet import data as data_lib
from msunet import hostmem, parallel
from msunet.checkpointing import Checkpointer
from msunet.losses import per_example_bce
from msunet.metrics import SegmentationMetrics
from msunet.models import MODELS
from msunet.optim import create_optimizer
from msunet.plot import plot_training_curves
from msunet.writers import MetricWriter, Progress

CONFIG_FILE = "config.json"
# Fields that fix the shapes of a checkpoint: a workdir cannot resume with other values.
SHAPE_FIELDS = ("model.name", "model.base_filters", "model.alpha", "model.in_channels",
                "model.out_channels", "data.image_size")


class TrainState(train_state.TrainState):
    """Params and Adam state, plus BatchNorm running statistics."""

    batch_stats: Any


def create_model(model_config: ml_collections.ConfigDict) -> nn.Module:
    """The network named by `model.name`, with its width and compute dtype."""
    if model_config.name not in MODELS:
        raise ValueError(f"unknown model.name {model_config.name!r}; expected one of "
                         f"{sorted(MODELS)}")
    kwargs = dict(base_filters=model_config.base_filters, out_channels=model_config.out_channels,
                  in_channels=model_config.in_channels, dtype=jnp.dtype(model_config.dtype),
                  head_bias_init=model_config.head_bias_init,
                  bn_momentum=model_config.bn_momentum)
    if model_config.name == "multiresunet":
        kwargs["alpha"] = model_config.alpha
    return MODELS[model_config.name](**kwargs)


def create_train_state(config: ml_collections.ConfigDict, rng: jax.Array) -> TrainState:
    """Initialise the model's variables and the Adam optimiser of `config.optim`."""
    model = create_model(config.model)
    size = config.data.image_size
    dummy = jnp.zeros((1, size, size, config.model.in_channels), jnp.float32)
    # Initialisers drawn from a threefry key take XLA:CPU several times longer to compile than
    # from an RngBitGenerator ("rbg") key seeded from `rng`, which is as reproducible here.
    init_key = jax.random.wrap_key_data(jax.random.bits(rng, (4,), jnp.uint32), impl="rbg")
    variables = jax.jit(functools.partial(model.init, train=False))(init_key, dummy)
    return TrainState.create(apply_fn=model.apply, params=variables["params"],
                             batch_stats=variables["batch_stats"],
                             tx=create_optimizer(config.optim))


def to_inputs(batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """uint8 images in [0, 255] -> float32 in [0, 1]; masks -> float32 {0, 1}."""
    return batch["image"].astype(jnp.float32) / 255.0, batch["mask"].astype(jnp.float32)


def train_step(state: TrainState, batch: dict[str, jax.Array],
               threshold: float) -> tuple[TrainState, SegmentationMetrics, jax.Array]:
    """One Adam step on the mean binary cross-entropy; BatchNorm statistics are updated.

    Returns the new state, the batch's metrics, and whether loss and gradients were finite.
    A non-finite step leaves the state as it was, so one bad batch cannot poison the params,
    and its metrics are masked out.
    """
    images, labels = to_inputs(batch)

    def loss_fn(params: Any) -> tuple[jax.Array, tuple[jax.Array, jax.Array, Any]]:
        logits, updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats}, images, train=True,
            mutable=["batch_stats"])
        losses = per_example_bce(logits, labels)
        return losses.mean(), (logits, losses, updates)

    grads, (logits, losses, updates) = jax.grad(loss_fn, has_aux=True)(state.params)
    finite = jnp.isfinite(losses).all() & jnp.all(jnp.array(
        [jnp.isfinite(g).all() for g in jax.tree.leaves(grads)]))
    updated = state.apply_gradients(grads=grads, batch_stats=updates["batch_stats"])
    state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), updated, state)
    # A discarded step contributes nothing to the logged averages either.
    metrics = SegmentationMetrics.single_from_model_output(
        loss=losses, logits=logits, labels=labels, threshold=threshold,
        mask=jnp.broadcast_to(finite, losses.shape))
    return state, metrics, finite


def eval_step(state: TrainState, batch: dict[str, jax.Array],
              threshold: float) -> SegmentationMetrics:
    """Metrics of one (padded) batch in inference mode; `batch['valid']` masks the padding."""
    images, labels = to_inputs(batch)
    logits = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats}, images,
                            train=False)
    return SegmentationMetrics.single_from_model_output(
        loss=per_example_bce(logits, labels), logits=logits, labels=labels,
        mask=batch["valid"], threshold=threshold)


def pad_batch(batch: dict[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
    """Pad a last, smaller batch to `batch_size` (one compiled shape) and mark real rows valid."""
    count = len(batch["image"])
    padded = {key: np.concatenate([value, np.zeros((batch_size - count,) + value.shape[1:],
                                                   value.dtype)])
              for key, value in batch.items()}
    padded["valid"] = np.arange(batch_size) < count
    return padded


def evaluate_metrics(eval_fn: Callable[..., SegmentationMetrics], state: TrainState,
                     batches: Iterable[dict[str, np.ndarray]], batch_size: int,
                     mesh: jax.sharding.Mesh | None = None) -> dict[str, float]:
    """Pooled metrics of one pass over `batches` (each padded to `batch_size` rows)."""
    mesh = mesh or parallel.make_mesh()
    total = None
    for batch in batches:
        update = eval_fn(state, parallel.shard_batch(pad_batch(batch, batch_size), mesh))
        total = update if total is None else total.merge(update)
    if total is None:
        raise ValueError("the evaluation split is empty")
    return {key: float(value) for key, value in total.compute().items()}


def _get_field(config: ml_collections.ConfigDict, dotted: str) -> Any:
    for part in dotted.split("."):
        config = config[part]
    return config


def check_config(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> None:
    """Reject configs that cannot work, and configs that conflict with the workdir's run."""
    size = config.data.image_size
    if size <= 0 or size % 16:
        raise ValueError(f"data.image_size must be a positive multiple of 16 (four 2x2 "
                         f"poolings), got {size}")
    patch = config.data.patch_size
    if patch and (patch % 16 or patch > size):
        raise ValueError(f"data.patch_size must be a multiple of 16 no larger than "
                         f"data.image_size={size}, got {patch}")
    if config.train.best_metric not in SegmentationMetrics.__annotations__:
        raise ValueError(f"train.best_metric must be one of "
                         f"{sorted(SegmentationMetrics.__annotations__)}, got "
                         f"{config.train.best_metric!r}")
    for field in ("train.batch_size", "train.eval_batch_size", "train.num_steps",
                  "train.log_every", "train.eval_every", "train.checkpoint_every",
                  "train.early_stopping.patience"):
        if _get_field(config, field) < 1:
            raise ValueError(f"{field} must be at least 1, got {_get_field(config, field)}")
    saved_path = workdir / CONFIG_FILE
    if saved_path.exists():
        saved = ml_collections.ConfigDict(json.loads(saved_path.read_text()))
        conflicts = [f"{field}: {_get_field(saved, field)!r} in the workdir, "
                     f"{_get_field(config, field)!r} now" for field in SHAPE_FIELDS
                     if _get_field(saved, field) != _get_field(config, field)]
        if conflicts:
            raise ValueError(f"{saved_path} was written by a run with another shape ("
                             + "; ".join(conflicts) + "): use a new --workdir, or the same "
                             "values to resume")


def early_stopper(settings: ml_collections.ConfigDict) -> early_stopping.EarlyStopping:
    """Stops at the `settings.patience`-th validation in a row without a loss gain of min_delta.

    flax's EarlyStopping stops one validation later than its `patience` says (it checks the
    count before incrementing it), hence the - 1.
    """
    return early_stopping.EarlyStopping(min_delta=settings.min_delta,
                                        patience=settings.patience - 1)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
                       ) -> dict[str, Any]:
    """Train per `config` in `workdir`, resuming from its latest checkpoint if there is one.

    Returns a summary: the last step, whether early stopping fired, and the best validation
    metrics seen.
    """
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    check_config(config, workdir)
    (workdir / CONFIG_FILE).write_text(config.to_json_best_effort(indent=2))
    tcfg = config.train

    mesh = parallel.make_mesh()
    train_rows = parallel.per_process_batch_size(tcfg.batch_size, mesh, "train.batch_size")
    eval_rows = parallel.per_process_batch_size(tcfg.eval_batch_size, mesh,
                                                "train.eval_batch_size")
    train_source = data_lib.build_source(config.data, "train", workdir)
    val_source = data_lib.build_source(config.data, "val", workdir)
    train_iter = iter(data_lib.train_dataset(config.data, train_source, train_rows, tcfg.seed,
                                             jax.process_index(), jax.process_count()))

    state = parallel.replicate(create_train_state(config, jax.random.key(tcfg.seed)), mesh)
    checkpointer = Checkpointer(workdir, max_to_keep=tcfg.max_to_keep)
    writer = MetricWriter(workdir)
    restored = None
    stopper = early_stopper(tcfg.early_stopping)
    higher_is_better = tcfg.best_metric != "loss"
    best = {"step": None, "value": None, "metrics": {}}
    first_step = 0
    if checkpointer.latest_step() is not None:
        restored = checkpointer.restore(state, data_iterator=train_iter)
        state, first_step = restored.state, restored.step
        stopper = stopper.replace(**restored.meta["early_stopping"])
        best = restored.meta["best"]
        writer.forget_after(first_step)
        print(f"resumed from step {first_step} ({workdir})", flush=True)

    threshold = config.eval.threshold
    train_fn = jax.jit(functools.partial(train_step, threshold=threshold), donate_argnums=0)
    eval_fn = jax.jit(functools.partial(eval_step, threshold=threshold))
    steps_per_epoch = len(train_source) / tcfg.batch_size

    saved_at = first_step

    def save_latest(step: int) -> None:
        nonlocal saved_at
        meta = {"early_stopping": {"best_metric": stopper.best_metric,
                                   "patience_count": stopper.patience_count,
                                   "should_stop": stopper.should_stop},
                "best": best, "skipped_steps": skipped}
        checkpointer.save(step, state, train_iter, meta)
        saved_at = step

    def check_finite() -> None:
        """Act on steps whose loss or gradients were not finite (checked lazily, in order)."""
        for bad_step, finite in unchecked:
            if bool(finite):
                continue
            if not tcfg.skip_nonfinite:
                good = checkpointer.latest_step()
                kept = (f"the latest checkpoint (step {good}) is the last good one" if good
                        else "no checkpoint was written")
                raise FloatingPointError(
                    f"non-finite loss or gradient at step {bad_step}; the run stopped and {kept}."
                    " Lower optim.learning_rate, check the data, or set "
                    "--config.train.skip_nonfinite=True to skip such steps")
            skipped.append(bad_step)
            print(f"warning: skipped step {bad_step}: non-finite loss or gradient", flush=True)
        unchecked.clear()

    skipped: list[int] = list(restored.meta.get("skipped_steps", [])) if restored else []
    unchecked: list[tuple[int, jax.Array]] = []
    progress = Progress(first_step, tcfg.num_steps)
    train_metrics = None
    step = first_step
    print(f"training {config.model.name} on {len(train_source)} {config.data.source} images "
          f"({config.data.image_size}px, batch {tcfg.batch_size}) for {tcfg.num_steps} steps",
          flush=True)
    with StopRequest() as stop_request, contextlib.closing(checkpointer), \
            contextlib.closing(writer):
        while step < tcfg.num_steps and not stopper.should_stop and not stop_request.signal:
            batch = parallel.shard_batch(next(train_iter), mesh)
            state, update, finite = train_fn(state, batch)
            train_metrics = update if train_metrics is None else train_metrics.merge(update)
            step += 1
            unchecked.append((step, finite))
            last = step == tcfg.num_steps
            if step % tcfg.log_every == 0 or last:
                check_finite()
                scalars = {f"train_{k}": v for k, v in train_metrics.compute().items()}
                line, rate = progress.line(step, float(scalars["train_loss"]))
                writer.write_scalars(step, {**scalars, "epoch": step / steps_per_epoch,
                                            "steps_per_second": rate})
                print(line, flush=True)
                train_metrics = None
            if step % tcfg.eval_every == 0 or last:
                check_finite()
                val = evaluate_metrics(eval_fn, state, data_lib.eval_dataset(
                    config.data, val_source, eval_rows), eval_rows, mesh)
                writer.write_scalars(step, {f"val_{k}": v for k, v in val.items()}
                                     | {"epoch": step / steps_per_epoch})
                stopper = stopper.update(val["loss"])
                value = val[tcfg.best_metric]
                if math.isnan(value):
                    raise ValueError(
                        f"validation {tcfg.best_metric} is undefined at step {step}: the "
                        "validation split has no lesion pixels (the empty-mask rule in "
                        "msunet/metrics.py); use --config.train.best_metric=loss")
                if best["value"] is None or (value > best["value"] if higher_is_better
                                             else value < best["value"]):
                    best = {"step": step, "value": value, "metrics": val}
                    checkpointer.save_best(step, state)
                print(f"  validation at step {step}: " + ", ".join(
                    f"{k} {v:.4f}" for k, v in val.items()) + f" (best {tcfg.best_metric} "
                    f"{best['value']:.4f} at step {best['step']})", flush=True)
                if stopper.should_stop:
                    print(f"early stopping at step {step}: validation loss has not improved "
                          f"by {stopper.min_delta} for {stopper.patience_count} validation "
                          "passes", flush=True)
            if step % tcfg.checkpoint_every == 0 or last or stopper.should_stop:
                check_finite()
                save_latest(step)
        # A signal can land at any point of a step, also after its checkpoint check: the run
        # saves where it stopped, and closing the checkpointer waits for the write.
        if step != saved_at:
            check_finite()
            save_latest(step)
    if stop_request.signal:
        print(f"stopped by {signal.Signals(stop_request.signal).name} at step {step}; saved a "
              "checkpoint. Re-run the same command to resume.", flush=True)
    print(f"training curves: {plot_training_curves(workdir)}", flush=True)
    return {"step": step, "stopped_early": bool(stopper.should_stop), "best": best,
            "skipped_steps": skipped, "signal": stop_request.signal}


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag the training loop checks after each step.

    The loop then saves a checkpoint and returns; a second SIGINT interrupts at once.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum
        print(f"\n{signal.Signals(signum).name} received: finishing this step and saving a "
              "checkpoint", flush=True)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and the saved config.")
config_flags.DEFINE_config_file("config", None, "A config file from configs/.",
                                lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
    try:
        hostmem.keep_freed_memory_unless_disabled()
        parallel.initialize(FLAGS.config.train.distributed)
        summary = train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except (ValueError, FileNotFoundError, FloatingPointError) as error:
        sys.exit(f"error: {error}")
    if summary["signal"]:
        sys.exit(128 + summary["signal"])


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, with a bad flag or config override as one `error: ...` line."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        sys.exit(f"error: {error}")
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        # ml_collections raises these for an unknown field (with a suggestion) or a bad value.
        sys.exit(f"error: bad --config override: {error}")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
