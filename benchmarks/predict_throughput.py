"""Full-size mammograms end to end: `msunet.predict` against the same steps in a Keras loop.

    python -m benchmarks.predict_throughput [--images 16] [--scale 3.0] [--repeats 2]
                                            [--output-dir benchmarks/results]

Each image goes decode (16-bit PNG) -> breast crop -> resize -> CLAHE -> MultiResUNet at
`data.image_size` -> probability map back onto the original pixels -> mask and overlay PNGs.
The inputs are the real Mini-DDSM samples (`$MSUNET_SAMPLES` or ../shared/data/mammo_samples,
else synthetic mammograms) enlarged `--scale` times to full scanner size and stored as 16-bit
PNGs. Both frameworks get the same weights (a Keras MultiResUNet initialised once, saved, and
read by msunet with `msunet.convert.from_keras`) and the same preprocessing and export code
(`msunet.inference`, `msunet.export`), so what differs is the model and how the steps are run:

- `msunet`: `msunet.predict.predict_files` as the command runs it (decoding and writing in
  threads overlapping the model, batches of `train.eval_batch_size`, BatchNorm folded).
- `keras-predict` / `keras-call`: a plain loop, one image at a time: read, prepare,
  `model.predict(x)` (Keras' documented inference call) or `model(x, training=False)`, restore,
  write; TensorFlow with oneDNN on (its fastest inference on this CPU, `--suite full`).

Each variant runs in a fresh process, after the CPU is idle, with one untimed warm-up pass over
two images (compilation, tracing); then all images are timed end to end. Writes
`predict_throughput.{json,md}`: images/s, seconds per image and peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
VARIANTS = {"msunet": {}, "keras-predict": {"TF_ENABLE_ONEDNN_OPTS": "1"},
            "keras-call": {"TF_ENABLE_ONEDNN_OPTS": "1"}}


def model_config(image_size: int, base_filters: int) -> Any:
    """msunet's default config at this model size (its data settings drive both loops)."""
    from msunet.config import base_config

    config = base_config()
    config.model.name = "multiresunet"
    config.model.base_filters = base_filters
    config.data.image_size = image_size
    return config


def make_inputs(folder: pathlib.Path, count: int, scale: float) -> list[pathlib.Path]:
    """`count` 16-bit PNG mammograms, the real samples (or synthetic ones) enlarged `scale`x."""
    import cv2

    from msunet.data.synthetic import synthetic_mammogram

    samples = pathlib.Path(os.environ.get("MSUNET_SAMPLES", RESULTS.parents[2] / "shared" /
                                          "data" / "mammo_samples"))
    sources = sorted(path for path in samples.glob("*/*/*.png")
                     if not path.stem.lower().endswith(("_mask", "_mask2")))
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        if sources:
            image = cv2.imread(str(sources[index % len(sources)]), cv2.IMREAD_GRAYSCALE)
        else:
            image = synthetic_mammogram(1, index, size=1024)["image"]
        large = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        sixteen = large.astype(np.uint16) * 257 + rng.integers(0, 256, large.shape, np.uint16)
        paths.append(folder / f"mammogram_{index:03d}.png")
        if not cv2.imwrite(str(paths[-1]), sixteen):
            raise OSError(f"could not write {paths[-1]}")
    return paths


def save_weights(path: pathlib.Path, image_size: int, base_filters: int) -> None:
    """One Keras MultiResUNet initialisation (seed 0), saved for both frameworks."""
    import keras

    from benchmarks import keras_reference

    keras.utils.set_random_seed(0)
    keras_reference.build("multiresunet", image_size, base_filters=base_filters
                          ).save_weights(path)


def _peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_msunet(inputs: list[pathlib.Path], weights: pathlib.Path, output: pathlib.Path,
                   config: Any) -> float:
    """Seconds for `msunet.predict.predict_files` over `inputs` (after a warm-up)."""
    from msunet import hostmem
    from msunet.convert import from_keras
    from msunet.inference import Predictor
    from msunet.predict import predict_files

    hostmem.keep_freed_memory_unless_disabled()
    predictor = Predictor(from_keras(weights), config)
    list(predict_files(predictor, inputs[:2], output / "warm-up"))
    start = time.perf_counter()
    for _ in predict_files(predictor, inputs, output):
        pass
    return time.perf_counter() - start


def measure_keras(inputs: list[pathlib.Path], weights: pathlib.Path, output: pathlib.Path,
                  config: Any, call: str) -> float:
    """Seconds for a one-image-at-a-time Keras loop over `inputs` (after a warm-up)."""
    from benchmarks import keras_reference
    from msunet.data.preprocess import model_inputs, prepare_image, restore_geometry
    from msunet.data.readers import read_input
    from msunet.export import save_prediction
    from msunet.inference import Prediction

    model = keras_reference.build("multiresunet", config.data.image_size,
                                  base_filters=config.model.base_filters)
    model.load_weights(weights)

    def one(path: pathlib.Path, folder: pathlib.Path) -> None:
        image = read_input(path)
        prepared, geometry = prepare_image(image, config.data)
        x = model_inputs(prepared[None, ..., None])
        small = (model.predict(x, verbose=0) if call == "predict"
                 else model(x, training=False).numpy())[0, ..., 0]
        probability = restore_geometry(small, geometry)
        save_prediction(Prediction(probability, probability >= config.eval.threshold, geometry),
                        image, folder, path.stem)

    for path in inputs[:2]:
        one(path, output / "warm-up")
    start = time.perf_counter()
    for path in inputs:
        one(path, output)
    return time.perf_counter() - start


def measure(variant: str, inputs: list[pathlib.Path], weights: pathlib.Path,
            output: pathlib.Path, image_size: int, base_filters: int) -> dict[str, Any]:
    """One variant's timed pass in this process."""
    config = model_config(image_size, base_filters)
    if variant == "msunet":
        seconds = measure_msunet(inputs, weights, output, config)
    else:
        seconds = measure_keras(inputs, weights, output, config, variant.removeprefix("keras-"))
    return {"variant": variant, "images": len(inputs), "seconds": seconds,
            "images_per_s": len(inputs) / seconds, "peak_memory_mb": _peak_memory_mb()}


def run(images: int, scale: float, repeats: int, image_size: int, base_filters: int,
        workdir: pathlib.Path, idle: bool = True) -> dict[str, Any]:
    """Inputs and weights in `workdir`, then `repeats` rounds of every variant, each its own
    process."""
    from benchmarks.run import machine, run_json, wait_for_idle

    inputs = make_inputs(workdir / "inputs", images, scale)
    weights = workdir / "multiresunet.weights.h5"
    common = ["--inputs", str(workdir / "inputs"), "--weights", str(weights),
              "--image-size", str(image_size), "--base-filters", str(base_filters)]
    run_json("benchmarks.predict_throughput", ["--role", "weights", *common])
    import cv2

    shape = cv2.imread(str(inputs[0]), cv2.IMREAD_UNCHANGED).shape
    runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
    for repeat in range(repeats):
        for variant, env in VARIANTS.items():
            print(f"predict_throughput: repeat {repeat + 1}/{repeats}, {variant}", flush=True)
            before = wait_for_idle() if idle else {}
            runs[variant].append({**run_json(
                "benchmarks.predict_throughput",
                ["--role", "measure", "--variant", variant, "--output-dir",
                 str(workdir / f"out-{variant}"), *common], env), **before})
    summary = {variant: {key: statistics.median(r[key] for r in results)
                         for key in ("images_per_s", "peak_memory_mb")}
               for variant, results in runs.items()}
    fastest_keras = max((v for v in summary if v != "msunet"),
                        key=lambda v: summary[v]["images_per_s"])
    return {"machine": machine(), "images": images, "scale": scale, "image_shape": list(shape),
            "image_dtype": "uint16", "image_size": image_size, "base_filters": base_filters,
            "repeats": repeats, "summary": summary, "fastest_keras": fastest_keras,
            "ratio_vs_fastest_keras": (summary["msunet"]["images_per_s"]
                                       / summary[fastest_keras]["images_per_s"]),
            "runs": runs}


def markdown(result: dict[str, Any]) -> str:
    """The table of one run."""
    height, width = result["image_shape"]
    load = result["machine"]["load_average_at_start"]
    lines = [
        f"{result['images']} full-size 16-bit mammograms ({width}x{height} px), MultiResUNet "
        f"width {result['base_filters']} at {result['image_size']}x{result['image_size']}, "
        f"median of {result['repeats']} runs, each a fresh process on an idle CPU (load average "
        f"at the start {', '.join(f'{v:.2f}' for v in load)}).",
        "",
        "| variant | images/s | seconds per image | peak memory MB |",
        "|---|---|---|---|",
    ]
    for variant, row in result["summary"].items():
        lines.append(f"| {variant} | {row['images_per_s']:.2f} | "
                     f"{1 / row['images_per_s']:.2f} | {row['peak_memory_mb']:.0f} |")
    lines += ["", f"msunet / fastest Keras loop ({result['fastest_keras']}): "
                  f"**{result['ratio_vs_fastest_keras']:.2f}x** (goal >= 2x)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=("suite", "weights", "measure"), default="suite")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--scale", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--base-filters", type=int, default=32)
    parser.add_argument("--output-dir", type=pathlib.Path, default=RESULTS)
    parser.add_argument("--variant", choices=sorted(VARIANTS))
    parser.add_argument("--inputs", type=pathlib.Path)
    parser.add_argument("--weights", type=pathlib.Path)
    args = parser.parse_args()
    if args.role == "weights":
        save_weights(args.weights, args.image_size, args.base_filters)
        print(json.dumps({"weights": str(args.weights)}))
    elif args.role == "measure":
        inputs = sorted(args.inputs.glob("*.png"))
        print(json.dumps(measure(args.variant, inputs, args.weights, args.output_dir,
                                 args.image_size, args.base_filters)), flush=True)
    else:
        with tempfile.TemporaryDirectory(prefix="msunet-predict-") as workdir:
            result = run(args.images, args.scale, args.repeats, args.image_size,
                         args.base_filters, pathlib.Path(workdir))
        args.output_dir.mkdir(parents=True, exist_ok=True)
        (args.output_dir / "predict_throughput.json").write_text(json.dumps(result, indent=1))
        (args.output_dir / "predict_throughput.md").write_text(markdown(result))
        print(markdown(result))


if __name__ == "__main__":
    sys.exit(main())
