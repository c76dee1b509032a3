"""The training library: pure train/eval steps and the loop that drives them.

    from msunet.training import train_and_evaluate
    summary = train_and_evaluate(config, "runs/mine")

Reads top to bottom: train/eval steps (pure, jit-compiled) -> validation pass -> `Trainer`,
which feeds batches, logs, checkpoints and stops early on the validation loss. The test split is
never read here. The command line is `msunet.train`; the model and its state come from
`msunet.state`, the workdir layout and run bookkeeping from `msunet.workdir`.
"""

from __future__ import annotations

import contextlib
import functools
import math
import signal
import threading
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax.training import early_stopping

from msunet import data as data_lib
from msunet import hostmem, parallel
from msunet.data.pipeline import pad_batch
from msunet.data.preprocess import model_inputs
from msunet.losses import PerExampleLoss, get_loss, per_example_bce
from msunet.metrics import TRAIN_METRICS, SegmentationMetrics
from msunet.models import MODELS
from msunet.plot import plot_training_curves
from msunet.state import TrainState, create_train_state
from msunet.workdir import EarlyStoppingState, RunMeta, Workdir
from msunet.writers import MetricWriter, Progress


def train_step(state: TrainState, batch: dict[str, jax.Array],
               loss_fn: PerExampleLoss = per_example_bce, threshold: float = 0.5,
               ) -> tuple[TrainState, SegmentationMetrics, jax.Array]:
    """One Adam step on the batch mean of `loss_fn`; BatchNorm statistics are updated.

    Returns the new state, the batch's metrics, and whether loss and gradients were finite.
    A non-finite step leaves the state as it was, so one bad batch cannot poison the params,
    and its metrics are masked out.
    """
    images, labels = model_inputs(batch["image"]), batch["mask"].astype(jnp.float32)

    def loss_and_outputs(params: Any) -> tuple[jax.Array, tuple[jax.Array, jax.Array, Any]]:
        logits, updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats}, images, train=True,
            mutable=["batch_stats"])
        losses = loss_fn(logits, labels)
        return losses.mean(), (logits, losses, updates)

    grads, (logits, losses, updates) = jax.grad(loss_and_outputs, has_aux=True)(state.params)
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
              loss_fn: PerExampleLoss = per_example_bce, threshold: float = 0.5,
              ) -> SegmentationMetrics:
    """Metrics of one (padded) batch in inference mode; `batch['valid']` masks the padding."""
    images, labels = model_inputs(batch["image"]), batch["mask"].astype(jnp.float32)
    logits = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats}, images,
                            train=False)
    return SegmentationMetrics.single_from_model_output(
        loss=loss_fn(logits, labels), logits=logits, labels=labels, mask=batch["valid"],
        threshold=threshold)


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


def check_config(config: ml_collections.ConfigDict) -> None:
    """Reject a config that cannot work, naming the field, before anything is built."""
    size = config.data.image_size
    if size <= 0 or size % 16:
        raise ValueError(f"data.image_size must be a positive multiple of 16 (four 2x2 "
                         f"poolings), got {size}")
    patch = config.data.patch_size
    if patch and (patch % 16 or patch > size):
        raise ValueError(f"data.patch_size must be a multiple of 16 no larger than "
                         f"data.image_size={size}, got {patch}")
    if config.model.name not in MODELS:
        raise ValueError(f"unknown model.name {config.model.name!r}; expected one of "
                         f"{sorted(MODELS)}")
    data_lib.check_source_name(config.data.source)
    get_loss(config.train.loss)
    if config.train.best_metric not in ("loss", *TRAIN_METRICS):
        raise ValueError(f"train.best_metric must be one of {['loss', *TRAIN_METRICS]}, got "
                         f"{config.train.best_metric!r}")
    for field in ("train.batch_size", "train.eval_batch_size", "train.num_steps",
                  "train.log_every", "train.eval_every", "train.checkpoint_every",
                  "train.early_stopping.patience"):
        if _get_field(config, field) < 1:
            raise ValueError(f"{field} must be at least 1, got {_get_field(config, field)}")


def early_stopper(settings: ml_collections.ConfigDict,
                  saved: EarlyStoppingState | None = None) -> early_stopping.EarlyStopping:
    """Stops at the `settings.patience`-th validation in a row without a loss gain of min_delta,
    continuing from `saved` counters when resuming.

    flax's EarlyStopping stops one validation later than its `patience` says (it checks the
    count before incrementing it), hence the - 1.
    """
    stopper = early_stopping.EarlyStopping(min_delta=settings.min_delta,
                                           patience=settings.patience - 1)
    return stopper if saved is None else stopper.replace(**vars(saved))


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


class Trainer:
    """One training run in one workdir: `__init__` builds (or resumes) it, `run()` drives it.

    The loop state is explicit: `state` (params, Adam, BatchNorm statistics), `step`, `meta`
    (early-stopping counters, best checkpoint, skipped steps: a `RunMeta`, saved with every
    latest checkpoint) and `stopper`.
    """

    def __init__(self, config: ml_collections.ConfigDict, workdir: str | Workdir) -> None:
        check_config(config)
        self.config, self.settings = config, config.train
        self.workdir = workdir if isinstance(workdir, Workdir) else Workdir(workdir)
        self.workdir.check_compatible(config)
        self.workdir.save_config(config)

        self.mesh = parallel.make_mesh()
        train_rows = parallel.per_process_batch_size(self.settings.batch_size, self.mesh,
                                                     "train.batch_size")
        self.eval_rows = parallel.per_process_batch_size(self.settings.eval_batch_size,
                                                         self.mesh, "train.eval_batch_size")
        paths = self.workdir.data_paths(config.data)
        self.train_source = data_lib.build_source(config.data, "train", **paths)
        self.val_source = data_lib.build_source(config.data, "val", **paths)
        self.train_iter = iter(data_lib.train_dataset(
            config.data, self.train_source, train_rows, self.settings.seed,
            jax.process_index(), jax.process_count()))

        self.state = parallel.replicate(
            create_train_state(config, jax.random.key(self.settings.seed)), self.mesh)
        self.checkpointer = self.workdir.checkpointer(self.settings.max_to_keep)
        self.writer = MetricWriter(self.workdir.metrics_file, self.workdir.tensorboard_dir)
        self.meta, self.step = RunMeta(), 0
        if self.checkpointer.latest_step() is not None:
            restored = self.checkpointer.restore(self.state, data_iterator=self.train_iter)
            self.state, self.step = restored.state, restored.step
            self.meta = RunMeta.from_json(restored.meta)
            self.writer.forget_after(self.step)
            print(f"resumed from step {self.step} ({self.workdir.root})", flush=True)
        self.stopper = early_stopper(self.settings.early_stopping, self.meta.early_stopping)
        self.saved_at = self.step

        loss_fn, threshold = get_loss(self.settings.loss), config.eval.threshold
        # Compiled before their first run, the compiler's memory released in between: with the
        # kept heap (msunet.hostmem) it would otherwise stay resident beside the step's
        # temporaries.
        self.train_fn = hostmem.CompiledAhead(jax.jit(functools.partial(
            train_step, loss_fn=loss_fn, threshold=threshold), donate_argnums=0))
        self.eval_fn = hostmem.CompiledAhead(jax.jit(functools.partial(
            eval_step, loss_fn=loss_fn, threshold=threshold)))
        self.steps_per_epoch = len(self.train_source) / self.settings.batch_size
        self.unchecked: list[tuple[int, jax.Array]] = []  # (step, finite flag) not yet read

    def run(self) -> dict[str, Any]:
        """Train to `train.num_steps`, early stopping or a stop signal; returns a summary: the
        last step, whether early stopping fired, the best validation metrics, skipped steps and
        the signal that stopped the run (None)."""
        settings, config = self.settings, self.config
        progress = Progress(self.step, settings.num_steps)
        train_metrics = None
        print(f"training {config.model.name} on {len(self.train_source)} {config.data.source} "
              f"images ({config.data.image_size}px, batch {settings.batch_size}, loss "
              f"{settings.loss}) for {settings.num_steps} steps", flush=True)
        with StopRequest() as stop_request, contextlib.closing(self.checkpointer), \
                contextlib.closing(self.writer):
            while (self.step < settings.num_steps and not self.stopper.should_stop
                   and not stop_request.signal):
                batch = parallel.shard_batch(next(self.train_iter), self.mesh)
                self.state, update, finite = self.train_fn(self.state, batch)
                train_metrics = update if train_metrics is None else train_metrics.merge(update)
                self.step += 1
                self.unchecked.append((self.step, finite))
                last = self.step == settings.num_steps
                if self.step % settings.log_every == 0 or last:
                    self._log_training(train_metrics, progress)
                    train_metrics = None
                if self.step % settings.eval_every == 0 or last:
                    self._validate()
                if self.step % settings.checkpoint_every == 0 or last or self.stopper.should_stop:
                    self._save_latest()
            # A signal can land at any point of a step, also after its checkpoint check: the run
            # saves where it stopped, and closing the checkpointer waits for the write.
            if self.step != self.saved_at:
                self._save_latest()
        if stop_request.signal:
            print(f"stopped by {signal.Signals(stop_request.signal).name} at step {self.step}; "
                  "saved a checkpoint. Re-run the same command to resume.", flush=True)
        print(f"training curves: {plot_training_curves(self.workdir.root)}", flush=True)
        return {"step": self.step, "stopped_early": bool(self.stopper.should_stop),
                "best": vars(self.meta.best), "skipped_steps": self.meta.skipped_steps,
                "signal": stop_request.signal}

    def _check_finite(self) -> None:
        """Act on steps whose loss or gradients were not finite (read lazily, in order)."""
        for bad_step, finite in self.unchecked:
            if bool(finite):
                continue
            if not self.settings.skip_nonfinite:
                good = self.checkpointer.latest_step()
                kept = (f"the latest checkpoint (step {good}) is the last good one"
                        if good is not None else "no checkpoint was written")
                raise FloatingPointError(
                    f"non-finite loss or gradient at step {bad_step}; the run stopped and {kept}."
                    " Lower optim.learning_rate, check the data, or set "
                    "--config.train.skip_nonfinite=True to skip such steps")
            self.meta.skipped_steps.append(bad_step)
            print(f"warning: skipped step {bad_step}: non-finite loss or gradient", flush=True)
        self.unchecked.clear()

    def _log_training(self, train_metrics: SegmentationMetrics, progress: Progress) -> None:
        self._check_finite()
        scalars = {f"train_{k}": v for k, v in train_metrics.compute().items()}
        line, rate = progress.line(self.step, float(scalars["train_loss"]))
        self.writer.write_scalars(self.step, {**scalars, "epoch": self.step / self.steps_per_epoch,
                                              "steps_per_second": rate})
        print(line, flush=True)

    def _validate(self) -> None:
        """Score the val split; update early stopping and, on a new best, the best checkpoint."""
        self._check_finite()
        metric = self.settings.best_metric
        val = evaluate_metrics(self.eval_fn, self.state, data_lib.eval_dataset(
            self.config.data, self.val_source, self.eval_rows), self.eval_rows, self.mesh)
        # The validation pass's freed memory sits where the next train step's one large block
        # of temporaries went; released, it does not stay resident beside the new one.
        hostmem.release_freed_memory()
        self.writer.write_scalars(self.step, {f"val_{k}": v for k, v in val.items()}
                                  | {"epoch": self.step / self.steps_per_epoch})
        self.stopper = self.stopper.update(val["loss"])
        value = val[metric]
        if math.isnan(value):
            raise ValueError(
                f"validation {metric} is undefined at step {self.step}: the validation split "
                "has no lesion pixels (the empty-mask rule in msunet/metrics.py); use "
                "--config.train.best_metric=loss")
        best = self.meta.best
        if best.value is None or (value < best.value if metric == "loss" else value > best.value):
            best.step, best.value, best.metrics = self.step, value, val
            self.checkpointer.save_best(self.step, self.state)
        print(f"  validation at step {self.step}: " + ", ".join(
            f"{k} {v:.4f}" for k, v in val.items()) + f" (best {metric} {best.value:.4f} at "
            f"step {best.step})", flush=True)
        if self.stopper.should_stop:
            print(f"early stopping at step {self.step}: validation loss has not improved by "
                  f"{self.stopper.min_delta} for {self.stopper.patience_count} validation passes",
                  flush=True)

    def _save_latest(self) -> None:
        self._check_finite()
        self.meta.early_stopping = EarlyStoppingState(
            best_metric=float(self.stopper.best_metric),
            patience_count=int(self.stopper.patience_count),
            should_stop=bool(self.stopper.should_stop))
        self.checkpointer.save(self.step, self.state, self.train_iter, self.meta.to_json())
        self.saved_at = self.step


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Workdir,
                       ) -> dict[str, Any]:
    """Train per `config` in `workdir`, resuming from its latest checkpoint if there is one.

    Returns `Trainer.run()`'s summary.
    """
    return Trainer(config, workdir).run()
