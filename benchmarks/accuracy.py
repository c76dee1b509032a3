"""One model trained to convergence by one framework, then scored on the test split.

    python -m benchmarks.accuracy --framework keras-tf --model multiresunet --seed 0 --init-dir D
    python -m benchmarks.accuracy --framework jax --model multiresunet --seed 0 --init-dir D

prints one JSON object (last stdout line): the learning curve, the step chosen on validation,
the test split's scores and the wall time to reach 95 % of the chosen validation fg IoU.
`python -m benchmarks.run --suite accuracy` runs every (model, framework, seed) this way, each in
a fresh process, and compares them.

The recipe is one loop (`train_to_convergence`) for both frameworks:
- Data: msunet's built-in synthetic mammograms through msunet's grain pipeline. The training
  stream is seeded by `seed`, so both frameworks read the very same augmented batches in the
  same order; validation and test are fixed splits.
- Initialisation: MultiResUNet runs start from the same weights (the Keras run saves its initial
  weights to `--init-dir`, the JAX run imports them with `msunet.convert`; run Keras first).
  U-Net runs start from each framework's own Glorot draw (msunet.convert reads MultiResUNet only).
- Optimisation: Adam with Keras' defaults (msunet: `optim.keras_epsilon`, the same update rule),
  binary cross-entropy (Keras computes it from the sigmoid's logits in graph mode, as msunet
  does), batch `batch`, learning rate `learning_rate`.
- Every `eval_every` steps the validation split is scored. When the validation loss has not
  improved by `min_delta` for `patience` validations, the learning rate is multiplied by
  `lr_factor` (Keras' `ReduceLROnPlateau`), at most `lr_reductions` times; the next such stall
  ends training (Keras' `EarlyStopping`), as does `max_steps`. The reductions are what let a
  constant-rate Adam run, still creeping down after thousands of steps, reach a plateau within
  the suite's time. The weights with the lowest validation loss are kept and scored on the test
  split.
- Scores: `scores`, the same numpy code for both frameworks: validation loss = binary
  cross-entropy of the probabilities clipped to [1e-7, 1 - 1e-7] (Keras' clipping); pooled
  foreground IoU, Dice, pixel accuracy and 2-class mean IoU from `msunet.metrics` (the
  definitions `msunet.evaluate` reports), at threshold 0.5.

Guards (a broken comparison fails instead of publishing): the optimiser's learning rate must
equal the spec's when training starts and after every reduction, and the training loss must
fall.
Wall times count from this module's import (`START`): framework imports, model building,
compilation and the input pipeline are included, as a user waiting for a result feels them.
"""

from __future__ import annotations

import os
import time

START = time.perf_counter()
LOAD_AT_START = os.getloadavg()

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import pathlib  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from typing import Any, Protocol  # noqa: E402

import numpy as np  # noqa: E402

from msunet.data.preprocess import model_inputs  # noqa: E402

FRAMEWORKS = ("jax", "keras-tf")
KERAS_EPSILON = 1e-7  # Keras' probability clipping and Adam epsilon


@dataclasses.dataclass(frozen=True)
class Spec:
    """One training recipe, identical for both frameworks."""

    model: str = "multiresunet"
    size: int = 64
    base_filters: int = 8
    batch: int = 8
    max_steps: int = 3000
    eval_every: int = 100
    patience: int = 5  # validations without a val-loss improvement of min_delta: a stall
    min_delta: float = 1e-4
    lr_factor: float = 0.1  # a stall multiplies the learning rate by this ...
    lr_reductions: int = 0  # ... this many times; the stall after that stops training
    num_train: int = 512
    num_val: int = 64
    num_test: int = 128
    learning_rate: float = 1e-3
    bn_momentum: float = 0.9  # as msunet's short-run configs (Keras' default is 0.99)
    head_bias_init: float = -3.0  # initial logit offset: a ~5 % lesion prior (Keras: 0)


def data_config(spec: Spec) -> Any:
    """msunet's base config with the spec's data, model and optimiser fields."""
    from msunet.config import base_config

    config = base_config()
    config.model.name = spec.model
    config.model.base_filters = spec.base_filters
    config.model.bn_momentum = spec.bn_momentum
    config.model.head_bias_init = spec.head_bias_init
    config.data.image_size = spec.size
    config.data.num_train = spec.num_train
    config.data.num_val = spec.num_val
    config.data.num_test = spec.num_test
    config.optim.learning_rate = spec.learning_rate
    config.optim.eps = KERAS_EPSILON
    config.optim.keras_epsilon = True
    return config


def train_batches(spec: Spec, seed: int) -> Iterator[dict[str, np.ndarray]]:
    """The training stream for `seed`: uint8 'image' and 'mask' batches, augmented."""
    from msunet import data as data_lib

    config = data_config(spec)
    source = data_lib.build_source(config.data, "train")
    return iter(data_lib.train_dataset(config.data, source, spec.batch, seed))


def split_batches(spec: Spec, split: str) -> list[dict[str, np.ndarray]]:
    """A fixed split ("val" or "test") in batches, the last one possibly smaller."""
    from msunet import data as data_lib

    config = data_config(spec)
    source = data_lib.build_source(config.data, split)
    return list(data_lib.eval_dataset(config.data, source, spec.batch))


def scores(probabilities: list[np.ndarray], masks: list[np.ndarray],
           threshold: float = 0.5) -> dict[str, float]:
    """Loss and pooled pixel metrics of a split, the same code for every framework."""
    from msunet.metrics import TRAIN_METRICS, pixel_counts, ratios

    p = np.concatenate([batch.ravel() for batch in probabilities]).astype(np.float64)
    truth = np.concatenate([batch.ravel() for batch in masks]) > 0
    clipped = np.clip(p, KERAS_EPSILON, 1 - KERAS_EPSILON)
    loss = -np.mean(np.where(truth, np.log(clipped), np.log1p(-clipped)))
    return {"loss": float(loss), **ratios(pixel_counts(p >= threshold, truth), TRAIN_METRICS)}


def check_loss_fell(losses: list[float], framework: str) -> None:
    """Raise if the mean training loss of the last third is not below the first third's."""
    window = max(1, len(losses) // 3)
    first, last = float(np.mean(losses[:window])), float(np.mean(losses[-window:]))
    if not last < first:
        raise RuntimeError(f"{framework}: the training loss did not fall ({first:.4f} over the "
                           f"first {window} steps, {last:.4f} over the last {window}); the "
                           "comparison would be meaningless")


class Trainer(Protocol):
    """What the shared loop needs from a framework."""

    def learning_rate(self) -> float: ...
    def set_learning_rate(self, value: float) -> None: ...
    def step(self, batch: dict[str, np.ndarray]) -> float: ...
    def predict(self, images: np.ndarray) -> np.ndarray: ...
    def snapshot(self) -> Any: ...
    def restore(self, weights: Any) -> None: ...


class JaxTrainer:
    """msunet's own train step (as `msunet.train` runs it), model and optimiser factories.

    The optimiser is `msunet.optim.create_optimizer` with its learning rate made a value of the
    optimiser state (`optax.inject_hyperparams`), so a reduction changes an array, not the
    compiled step.
    """

    def __init__(self, spec: Spec, seed: int, init_path: pathlib.Path | None,
                 keras_epsilon: bool = True) -> None:
        import functools

        import jax
        import jax.numpy as jnp
        import ml_collections
        import optax

        from msunet.convert import from_keras
        from msunet.optim import create_optimizer
        from msunet.state import create_model, create_train_state
        from msunet.training import train_step

        self.config = data_config(spec)
        self.config.optim.keras_epsilon = keras_epsilon
        model = create_model(self.config.model)
        state = create_train_state(self.config, jax.random.key(seed))

        def adam(learning_rate: jax.Array) -> optax.GradientTransformation:
            return create_optimizer(ml_collections.ConfigDict(
                {**self.config.optim.to_dict(), "learning_rate": learning_rate}))

        # float32, not a weakly typed Python float: a reduction must not retrace the step
        tx = optax.inject_hyperparams(adam)(learning_rate=jnp.float32(spec.learning_rate))
        state = state.replace(tx=tx, opt_state=tx.init(state.params))
        if init_path is not None:
            variables = from_keras(init_path, alpha=self.config.model.alpha)
            state = state.replace(params=variables["params"],
                                  batch_stats=variables["batch_stats"])
        self.state = state
        self._step = jax.jit(functools.partial(train_step, threshold=0.5), donate_argnums=0)
        self._probabilities = jax.jit(
            lambda variables, x: jax.nn.sigmoid(model.apply(variables, x, train=False)))

    def learning_rate(self) -> float:
        return float(self.state.opt_state.hyperparams["learning_rate"])

    def set_learning_rate(self, value: float) -> None:
        import jax.numpy as jnp

        hyperparams = {**self.state.opt_state.hyperparams, "learning_rate": jnp.float32(value)}
        self.state = self.state.replace(
            opt_state=self.state.opt_state._replace(hyperparams=hyperparams))

    def step(self, batch: dict[str, np.ndarray]) -> float:
        self.state, metrics, finite = self._step(self.state, batch)
        if not bool(finite):
            raise FloatingPointError("jax: non-finite loss or gradient")
        return float(metrics.compute()["loss"])

    def predict(self, images: np.ndarray) -> np.ndarray:
        variables = {"params": self.state.params, "batch_stats": self.state.batch_stats}
        return np.asarray(self._probabilities(variables, images))

    def snapshot(self) -> Any:
        import jax

        return jax.device_get({"params": self.state.params,
                               "batch_stats": self.state.batch_stats})

    def restore(self, weights: Any) -> None:
        self.state = self.state.replace(**weights)


class KerasTrainer:
    """The Keras reference: a fresh model and optimiser, `train_on_batch`/`predict_on_batch`.

    `dtype="float64"` builds every layer, and Adam's state, in float64: the exact reference the
    trajectory-parity check compares float32 runs against.
    """

    def __init__(self, spec: Spec, seed: int, init_path: pathlib.Path | None,
                 dtype: str = "float32") -> None:
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        import keras

        from benchmarks import keras_reference

        keras.utils.set_random_seed(seed)
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(dtype)
        try:
            self.model = keras_reference.build(
                spec.model, spec.size, base_filters=spec.base_filters,
                bn_momentum=spec.bn_momentum, head_bias_init=spec.head_bias_init)
        finally:
            keras.config.set_dtype_policy(previous)
        self.model.compile(optimizer=keras.optimizers.Adam(spec.learning_rate,
                                                           epsilon=KERAS_EPSILON),
                           loss="binary_crossentropy")
        if init_path is not None:
            init_path.parent.mkdir(parents=True, exist_ok=True)
            self.model.save_weights(init_path)

    def learning_rate(self) -> float:
        return float(np.asarray(self.model.optimizer.learning_rate))

    def set_learning_rate(self, value: float) -> None:
        self.model.optimizer.learning_rate.assign(value)

    def step(self, batch: dict[str, np.ndarray]) -> float:
        return float(self.model.train_on_batch(model_inputs(batch["image"]),
                                               batch["mask"].astype(np.float32)))

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_on_batch(images))

    def snapshot(self) -> Any:
        return self.model.get_weights()

    def restore(self, weights: Any) -> None:
        self.model.set_weights(weights)


def evaluate(trainer: Trainer, batches: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """`scores` of the trainer's current weights on `batches`."""
    return scores([trainer.predict(model_inputs(batch["image"])) for batch in batches],
                  [batch["mask"] for batch in batches])


def check_learning_rate(trainer: Trainer, expected: float, framework: str) -> None:
    """Raise if the optimiser does not train at `expected` (e.g. a reset that zeroed it)."""
    if not math.isclose(trainer.learning_rate(), expected, rel_tol=1e-6):
        raise RuntimeError(f"{framework}: the optimiser's learning rate is "
                           f"{trainer.learning_rate()}, the spec's {expected}")


def train_to_convergence(spec: Spec, trainer: Trainer, seed: int,
                         framework: str) -> dict[str, Any]:
    """The shared loop: train, validate, reduce the rate or stop on a stall, score on test."""
    check_learning_rate(trainer, spec.learning_rate, framework)
    val = split_batches(spec, "val")
    batches = train_batches(spec, seed)
    curve: list[dict[str, float]] = []
    losses: list[float] = []
    best: dict[str, float] | None = None
    best_weights = None
    patience_best, stale, reductions, stopped_early = math.inf, 0, 0, False
    for step in range(1, spec.max_steps + 1):
        losses.append(trainer.step(next(batches)))
        if step % spec.eval_every and step != spec.max_steps:
            continue
        point = {"step": step, "wall_s": time.perf_counter() - START,
                 "learning_rate": trainer.learning_rate(),
                 "train_loss": float(np.mean(losses[-spec.eval_every:])),
                 **{f"val_{key}": value for key, value in evaluate(trainer, val).items()}}
        curve.append(point)
        if best is None or point["val_loss"] < best["val_loss"]:
            best, best_weights = point, trainer.snapshot()
        if point["val_loss"] < patience_best - spec.min_delta:
            patience_best, stale = point["val_loss"], 0
            continue
        stale += 1
        if stale < spec.patience:
            continue
        if reductions == spec.lr_reductions:
            stopped_early = True
            break
        reductions, stale = reductions + 1, 0
        rate = spec.learning_rate * spec.lr_factor**reductions
        trainer.set_learning_rate(rate)
        check_learning_rate(trainer, rate, framework)
    check_loss_fell(losses, framework)
    trainer.restore(best_weights)
    test = evaluate(trainer, split_batches(spec, "test"))
    target = 0.95 * best["val_fg_iou"]
    reached = next(point for point in curve if point["val_fg_iou"] >= target)
    return {"seed": seed, "curve": curve, "steps": len(losses), "stopped_early": stopped_early,
            "best": best, "test": test,
            "time_to_95": {"step": reached["step"], "wall_s": reached["wall_s"]},
            "wall_s": time.perf_counter() - START}


def init_path(init_dir: str, spec: Spec, seed: int) -> pathlib.Path | None:
    """Where a MultiResUNet run's shared initial weights live (None: no sharing)."""
    if not init_dir or spec.model != "multiresunet":
        return None
    return pathlib.Path(init_dir) / (f"{spec.model}_{spec.size}px_f{spec.base_filters}"
                                     f"_seed{seed}.weights.h5")


def run(spec: Spec, framework: str, seed: int, init_dir: str) -> dict[str, Any]:
    """Build `framework`'s trainer (sharing MultiResUNet inits through `init_dir`) and run it."""
    shared = init_path(init_dir, spec, seed)
    if framework == "jax":
        if shared is not None and not shared.exists():
            raise FileNotFoundError(f"{shared}: no Keras initial weights; run keras-tf first")
        trainer: Trainer = JaxTrainer(spec, seed, shared)
    else:
        trainer = KerasTrainer(spec, seed, shared)
    result = train_to_convergence(spec, trainer, seed, framework)
    return {"framework": framework, "spec": dataclasses.asdict(spec),
            "same_init_as_keras": shared is not None, "load_average_at_start": LOAD_AT_START,
            **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework", choices=FRAMEWORKS, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init-dir", default="", help="where MultiResUNet runs share inits")
    for field in dataclasses.fields(Spec):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default),
                            default=field.default)
    args = vars(parser.parse_args())
    framework, seed, init_dir = args.pop("framework"), args.pop("seed"), args.pop("init_dir")
    print(json.dumps(run(Spec(**args), framework, seed, init_dir)), flush=True)


if __name__ == "__main__":
    main()
