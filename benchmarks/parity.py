"""Trajectory parity: msunet and the Keras reference, same weights, same batches, step by step.

    python -m benchmarks.parity     # writes benchmarks/results/keras_parity.{json,md}

MultiResUNet (Keras' own defaults: BatchNorm momentum 0.99, no head offset) starts from one set of
Glorot weights (Keras draws them, `msunet.convert` imports them), reads the same `steps` (4)
augmented training batches, and takes that many Adam steps in each variant:

- `keras-f64`: the Keras reference with every layer and Adam's state in float64. The reference:
  float32 rounding in any implementation is measured against it.
- `keras-f32`: the Keras reference as users run it (TensorFlow, float32).
- `msunet`: msunet's own train step in float32 with `optim.keras_epsilon=True` (the default).
- `msunet-optax-eps`: the same with optax's epsilon placement (`optim.keras_epsilon=False`).

For each it records the per-step training losses and, against `keras-f64`, the largest relative
loss difference and the largest absolute difference of any final parameter or BatchNorm
statistic. `tests/benchmarks/test_parity.py` runs `keras-f64` and `msunet` and bounds both.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import pathlib
import tempfile
from typing import Any

import numpy as np

from benchmarks import accuracy

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
VARIANTS = ("keras-f64", "keras-f32", "msunet", "msunet-optax-eps")
SPEC = accuracy.Spec(size=32, base_filters=4, batch=4, num_train=16, bn_momentum=0.99,
                     head_bias_init=0.0)


def _trainer(variant: str, spec: accuracy.Spec, init: pathlib.Path) -> accuracy.Trainer:
    """`variant`'s trainer, starting from the weights saved in `init`."""
    if variant.startswith("keras"):
        trainer = accuracy.KerasTrainer(spec, 0, None,
                                        dtype="float64" if variant == "keras-f64" else "float32")
        trainer.model.load_weights(init)
        return trainer
    return accuracy.JaxTrainer(spec, 0, init, keras_epsilon=variant == "msunet")


def _variables(trainer: accuracy.Trainer) -> Any:
    """The trainer's weights as msunet's params/batch_stats tree."""
    if isinstance(trainer, accuracy.KerasTrainer):
        from msunet.convert import from_keras

        return from_keras(trainer.model)
    return trainer.snapshot()


def _max_abs_difference(a: Any, b: Any) -> float:
    import jax

    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def compare(variants: tuple[str, ...] = VARIANTS, steps: int = 4,
            spec: accuracy.Spec = SPEC) -> dict[str, Any]:
    """Train every variant `steps` steps from the same weights; differences to `keras-f64`."""
    if variants[0] != "keras-f64":
        raise ValueError("the first variant must be the float64 reference 'keras-f64'")
    stream = accuracy.train_batches(spec, seed=0)
    batches = [next(stream) for _ in range(steps)]
    with tempfile.TemporaryDirectory() as folder:
        init = pathlib.Path(folder) / "init.weights.h5"
        accuracy.KerasTrainer(spec, 0, init)  # draws and saves the shared initial weights
        from msunet.convert import from_keras

        initial = from_keras(init)
        runs = {}
        for variant in variants:
            trainer = _trainer(variant, spec, init)
            losses = [trainer.step(batch) for batch in batches]
            runs[variant] = {"losses": losses, "variables": _variables(trainer)}
    reference = runs["keras-f64"]
    results = {"spec": dataclasses.asdict(spec), "steps": steps,
               "max_parameter_movement": _max_abs_difference(reference["variables"], initial),
               "variants": {}}
    for variant, run in runs.items():
        relative = np.abs(np.subtract(run["losses"], reference["losses"])) / np.asarray(
            reference["losses"])
        results["variants"][variant] = {
            "losses": run["losses"], "max_relative_loss_difference": float(relative.max()),
            "max_abs_variable_difference": _max_abs_difference(run["variables"],
                                                               reference["variables"])}
    return results


def markdown(results: dict[str, Any]) -> str:
    """The table the README shows."""
    spec = results["spec"]
    lines = [f"MultiResUNet {spec['size']}x{spec['size']}, width {spec['base_filters']}, batch "
             f"{spec['batch']}, {results['steps']} Adam steps (lr {spec['learning_rate']}) from "
             "the same weights on the same batches; differences to the float64 Keras run "
             f"(largest parameter movement in that run: {results['max_parameter_movement']:.3g})"
             f". {results['date']}.", "",
             "| variant | max relative loss difference | max abs parameter/statistic difference |",
             "|---|---|---|"]
    for variant, row in results["variants"].items():
        lines.append(f"| {variant} | {row['max_relative_loss_difference']:.2e} | "
                     f"{row['max_abs_variable_difference']:.2e} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--output-dir", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args()
    results = compare(steps=args.steps)
    results["date"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "keras_parity.json").write_text(json.dumps(results, indent=2))
    (args.output_dir / "keras_parity.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
