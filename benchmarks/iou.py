"""Validation IoU of one framework trained on msunet's built-in synthetic mammograms.

    python -m benchmarks.iou --framework jax --model multiresunet --size 64 --steps 200

prints one JSON line with, per seed, the learning curve (train loss, validation metrics every
`--eval-every` steps) and the final validation metrics. Both frameworks read the very same
batches (msunet's grain pipeline with the seed as data-order seed), train with Adam (Keras'
defaults) on binary cross-entropy for the same steps, and are scored by the same numpy code:
pooled foreground IoU, Dice, pixel accuracy and the paper-style 2-class mean IoU.

For MultiResUNet, `--init-dir` makes both start from the same weights: the Keras run writes its
initial weights there as `.weights.h5`, and the JAX run imports them with `msunet.convert`
(run Keras first). U-Net runs start from each framework's own Glorot initialisation.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

FRAMEWORKS = ("jax", "keras-tf")


@dataclasses.dataclass(frozen=True)
class Spec:
    """One training setup, identical for both frameworks."""

    model: str = "multiresunet"
    size: int = 64
    base_filters: int = 8
    batch: int = 8
    steps: int = 200
    eval_every: int = 50
    num_train: int = 256
    num_val: int = 64
    learning_rate: float = 1e-3


def data_config(spec: Spec) -> Any:
    """msunet's base config with the spec's data, model and optimiser fields."""
    from msunet.config import base_config

    config = base_config()
    config.model.name = spec.model
    config.model.base_filters = spec.base_filters
    config.data.image_size = spec.size
    config.data.num_train = spec.num_train
    config.data.num_val = spec.num_val
    config.optim.learning_rate = spec.learning_rate
    return config


def train_batches(spec: Spec, seed: int) -> Iterator[dict[str, np.ndarray]]:
    """The training stream for `seed`: uint8 'image' and 'mask' batches."""
    from msunet import data as data_lib

    config = data_config(spec)
    source = data_lib.build_source(config.data, "train")
    return iter(data_lib.train_dataset(config.data, source, spec.batch, seed))


def val_batches(spec: Spec) -> list[dict[str, np.ndarray]]:
    """The validation split in batches, the last one possibly smaller."""
    from msunet import data as data_lib

    config = data_config(spec)
    source = data_lib.build_source(config.data, "val")
    return list(data_lib.eval_dataset(config.data, source, spec.batch))


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 images -> float32 in [0, 1], as msunet's train step does."""
    return images.astype(np.float32) / 255.0


def scores(probabilities: list[np.ndarray], masks: list[np.ndarray],
           threshold: float = 0.5) -> dict[str, float]:
    """Pooled pixel metrics: foreground IoU, Dice, accuracy and 2-class mean IoU."""
    predicted = np.concatenate([p.ravel() for p in probabilities]) >= threshold
    truth = np.concatenate([m.ravel() for m in masks]) > 0
    tp = float(np.sum(predicted & truth))
    fp = float(np.sum(predicted & ~truth))
    fn = float(np.sum(~predicted & truth))
    tn = float(np.sum(~predicted & ~truth))

    def ratio(numerator: float, denominator: float) -> float:
        return numerator / denominator if denominator else 1.0

    iou = ratio(tp, tp + fp + fn)
    return {"iou": iou, "dice": ratio(2 * tp, 2 * tp + fp + fn),
            "accuracy": ratio(tp + tn, tp + tn + fp + fn),
            "mean_iou_2class": (iou + ratio(tn, tn + fp + fn)) / 2}


def _init_path(init_dir: str, spec: Spec, seed: int) -> pathlib.Path | None:
    if not init_dir or spec.model != "multiresunet":
        return None
    return pathlib.Path(init_dir) / (f"{spec.model}_{spec.size}px_f{spec.base_filters}"
                                     f"_seed{seed}.weights.h5")


def _train(spec: Spec, seed: int, step_fn: Callable[[dict[str, np.ndarray]], float],
           predict: Callable[[np.ndarray], np.ndarray]) -> dict[str, Any]:
    """The loop both frameworks share: train, evaluate every `eval_every` steps."""
    val = val_batches(spec)
    curve, losses = [], []
    batches = train_batches(spec, seed)
    for step in range(1, spec.steps + 1):
        losses.append(step_fn(next(batches)))
        if step % spec.eval_every == 0 or step == spec.steps:
            metrics = scores([predict(to_float(b["image"])) for b in val],
                             [b["mask"] for b in val])
            curve.append({"step": step, "train_loss": float(np.mean(losses)), **metrics})
            losses = []
    return {"seed": seed, "curve": curve, "final": curve[-1]}


def run_jax(spec: Spec, seeds: list[int], init_dir: str) -> list[dict[str, Any]]:
    """msunet's train_step (as msunet.train runs it) from each seed; compiled once."""
    import functools

    import jax

    from msunet.convert import from_keras
    from msunet.train import create_model, create_train_state, train_step

    config = data_config(spec)
    model = create_model(config.model)
    step = jax.jit(functools.partial(train_step, threshold=0.5), donate_argnums=0)

    @jax.jit
    def probabilities(variables: Any, x: jax.Array) -> jax.Array:
        return jax.nn.sigmoid(model.apply(variables, x, train=False))

    results = []
    for seed in seeds:
        state = create_train_state(config, jax.random.key(seed))
        init = _init_path(init_dir, spec, seed)
        shared = init is not None and init.exists()
        if shared:
            variables = from_keras(init, alpha=config.model.alpha)
            state = state.replace(params=variables["params"],
                                  batch_stats=variables["batch_stats"])
        holder = {"state": state}

        def step_fn(batch: dict[str, np.ndarray], holder: dict[str, Any] = holder) -> float:
            holder["state"], metrics, _ = step(holder["state"], batch)
            return float(metrics.compute()["loss"])

        def predict(x: np.ndarray, holder: dict[str, Any] = holder) -> np.ndarray:
            current = holder["state"]
            return np.asarray(probabilities(
                {"params": current.params, "batch_stats": current.batch_stats}, x))

        results.append({**_train(spec, seed, step_fn, predict), "same_init_as_keras": shared})
    return results


def run_keras(spec: Spec, seeds: list[int], init_dir: str) -> list[dict[str, Any]]:
    """The Keras reference with train_on_batch; one compiled model, re-initialised per seed."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    from benchmarks import keras_reference

    def build() -> keras.Model:
        return keras_reference.build(spec.model, spec.size, base_filters=spec.base_filters)

    model = build()
    model.compile(optimizer=keras.optimizers.Adam(spec.learning_rate, epsilon=1e-7),
                  loss="binary_crossentropy")
    results = []
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        model.set_weights(build().get_weights())  # fresh Glorot weights, zero BN statistics
        for variable in model.optimizer.variables:  # fresh Adam moments and step count
            variable.assign(np.zeros(variable.shape, variable.dtype))
        init = _init_path(init_dir, spec, seed)
        if init is not None:
            init.parent.mkdir(parents=True, exist_ok=True)
            model.save_weights(init)
        results.append(_train(
            spec, seed,
            lambda b: float(model.train_on_batch(to_float(b["image"]), b["mask"].astype("f4"))),
            lambda x: np.asarray(model.predict_on_batch(x))))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework", choices=FRAMEWORKS, required=True)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--init-dir", default="", help="where MultiResUNet runs share inits")
    for field in dataclasses.fields(Spec):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default),
                            default=field.default)
    args = vars(parser.parse_args())
    framework, init_dir = args.pop("framework"), args.pop("init_dir")
    seeds = [int(s) for s in args.pop("seeds").split(",")]
    spec = Spec(**args)
    run = run_jax if framework == "jax" else run_keras
    print(json.dumps({"framework": framework, "spec": dataclasses.asdict(spec),
                      "runs": run(spec, seeds, init_dir)}), flush=True)


if __name__ == "__main__":
    main()
