"""The benchmark suite: msunet (JAX) against the Keras reference, throughput and IoU.

    python -m benchmarks.run --suite quick   # tiny shapes, a few minutes on 2 CPU cores
    python -m benchmarks.run --suite full    # 256x256 batch 8 throughput; IoU at 64x64

Every measurement runs in its own subprocess (`benchmarks.throughput`, `benchmarks.iou`), one
variant at a time, variants alternating within each repeat. Writes to `--output-dir`
(default benchmarks/results/): `<suite>.json` (headline: `train_ratio_vs_keras_tf`, msunet's
median train images/s over the fastest Keras/TF variant's), `<suite>.md` (tables) and
`<suite>_*.png` (plots).

Throughput variants: `jax` is msunet as its command-line tools run it (freed host memory kept,
`msunet.hostmem`); Keras/TF runs with TensorFlow's oneDNN switch off (`keras-tf`, its default on
CPUs without AVX-512), on (`keras-tf-onednn`), and off with msunet's host-memory setting
(`keras-tf-kept`), so that the ratio is against TensorFlow's best showing on the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
from importlib import metadata
from typing import Any

from benchmarks import iou, throughput

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

# name -> (framework, host memory, environment); see the module docstring.
VARIANTS: dict[str, tuple[str, str, dict[str, str]]] = {
    "jax": ("jax", "kept", {}),
    "jax-default-malloc": ("jax", "default", {}),
    "keras-tf": ("keras-tf", "default", {"TF_ENABLE_ONEDNN_OPTS": "0"}),
    "keras-tf-onednn": ("keras-tf", "default", {"TF_ENABLE_ONEDNN_OPTS": "1"}),
    "keras-tf-kept": ("keras-tf", "kept", {"TF_ENABLE_ONEDNN_OPTS": "0"}),
    "keras-jax": ("keras-jax", "default", {}),
}

SUITES: dict[str, dict[str, Any]] = {
    "quick": {
        "throughput": throughput.Spec(size=32, batch=2, base_filters=4, train_steps=2,
                                      infer_steps=2),
        "variants": ("jax", "keras-tf"),
        "repeats": 1,  # a plumbing check of every stage, not a measurement
        "compile_cache": True,  # a plumbing check: reuse compiled programs between runs
        "iou": iou.Spec(size=32, base_filters=4, batch=4, steps=6, eval_every=3, num_train=16,
                        num_val=8),
        "iou_models": {"multiresunet": ("keras-tf", "jax")},
        "seeds": (0,),
    },
    "full": {
        # 3 timed steps: the median is robust to the one slow step in which a kept heap grows.
        "throughput": throughput.Spec(size=256, batch=8, base_filters=32, train_steps=3,
                                      infer_steps=2),
        # add keras-jax or jax-default-malloc with --variants (slow here)
        "variants": ("jax", "keras-tf", "keras-tf-onednn", "keras-tf-kept"),
        "repeats": 2,
        "compile_cache": False,  # every process compiles, so compile times are honest
        "iou": iou.Spec(size=64, base_filters=8, batch=8, steps=40, eval_every=10,
                        num_train=256, num_val=64),
        # Keras runs first: its MultiResUNet inits are imported by the JAX runs.
        "iou_models": {"multiresunet": ("keras-tf", "jax"), "unet": ("jax",)},
        "seeds": (0, 1, 2),
    },
}


def _spec_args(spec: Any) -> list[str]:
    return [arg for field in dataclasses.fields(spec)
            for arg in (f"--{field.name.replace('_', '-')}", str(getattr(spec, field.name)))]


def _run_json(module: str, args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `python -m module args` and return the JSON object on its last stdout line."""
    process = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, text=True,
                             capture_output=True, env={**os.environ, **(env or {})})
    if process.returncode:
        raise RuntimeError(f"{module} {' '.join(args)} failed ({process.returncode}):\n"
                           f"{process.stderr[-3000:]}")
    return json.loads(process.stdout.strip().splitlines()[-1])


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run_throughput(spec: throughput.Spec, variants: tuple[str, ...], repeats: int,
                   compile_cache: bool) -> dict[str, Any]:
    """`repeats` rounds, each measuring every variant once in a fresh process."""
    cache = {} if compile_cache else {"JAX_COMPILATION_CACHE_DIR": ""}
    runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in variants}
    for repeat in range(repeats):
        for variant in variants:
            framework, host_memory, env = VARIANTS[variant]
            print(f"throughput: repeat {repeat + 1}/{repeats}, {variant}", flush=True)
            runs[variant].append(_run_json(
                "benchmarks.throughput", ["--framework", framework, "--host-memory", host_memory,
                                          *_spec_args(spec)], {**cache, **env}))
    summary = {}
    for variant, results in runs.items():
        summary[variant] = {
            f"{phase}_images_per_s": _stats([statistics.median(r[phase]["images_per_s"])
                                             for r in results])
            for phase in ("train", "infer")}
        summary[variant].update({
            f"{phase}_compile_s": _stats([r[phase]["compile_s"] for r in results])
            for phase in ("train", "infer")})
        summary[variant]["peak_memory_mb"] = _stats([r["peak_memory_mb"] for r in results])
    return {"spec": dataclasses.asdict(spec), "repeats": repeats,
            "jax_compile_cache": compile_cache, "summary": summary, "runs": runs}


def run_iou(spec: iou.Spec, models: dict[str, tuple[str, ...]], seeds: tuple[int, ...],
            init_dir: pathlib.Path) -> dict[str, Any]:
    """Each model trained by its frameworks, in order, from each seed."""
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for model, frameworks in models.items():
        model_spec = dataclasses.replace(spec, model=model)
        runs[model] = {}
        for framework in frameworks:
            print(f"iou: {model}, {framework}, seeds {list(seeds)}", flush=True)
            result = _run_json("benchmarks.iou", [
                "--framework", framework, "--seeds", ",".join(map(str, seeds)),
                "--init-dir", str(init_dir), *_spec_args(model_spec)])
            runs[model][framework] = result["runs"]
    summary = {model: {framework: {
        metric: {"mean": statistics.mean(r["final"][metric] for r in results),
                 "std": statistics.pstdev(r["final"][metric] for r in results)}
        for metric in ("iou", "dice", "accuracy", "mean_iou_2class")}
        for framework, results in by_framework.items()} for model, by_framework in runs.items()}
    return {"spec": dataclasses.asdict(spec), "seeds": list(seeds), "summary": summary,
            "runs": runs}


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("jax", "jaxlib", "flax", "tensorflow-cpu", "tensorflow", "keras"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions,
            "load_average_at_start": os.getloadavg(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def _ratio(summary: dict[str, Any], phase: str, baseline: str) -> float | None:
    if "jax" not in summary or baseline not in summary:
        return None
    key = f"{phase}_images_per_s"
    return summary["jax"][key]["median"] / summary[baseline][key]["median"]


def fastest_keras_tf(summary: dict[str, Any], phase: str) -> str | None:
    """The Keras/TF variant with the highest median images/s in `phase`."""
    key = f"{phase}_images_per_s"
    measured = [v for v in summary if VARIANTS[v][0] == "keras-tf"]
    return max(measured, key=lambda v: summary[v][key]["median"], default=None)


def markdown(results: dict[str, Any]) -> str:
    """The tables the README shows."""
    tp, spec, info = results["throughput"], results["throughput"]["spec"], results["machine"]
    lines = [
        f"Suite `{results['suite']}` on {info['cpu']} ({info['cores']} cores), "
        f"{info['date']}; versions {info['versions']}.",
        "",
        f"Throughput: {spec['model']} {spec['size']}x{spec['size']}, batch {spec['batch']}, "
        f"base width {spec['base_filters']}, {spec['dtype']}; median (min-max) of "
        f"{tp['repeats']} repeats, each a fresh process.",
        "",
        "| variant | train images/s | inference images/s | train compile s | peak memory MB |",
        "|---|---|---|---|---|",
    ]
    for variant, s in tp["summary"].items():
        def cell(stat: dict[str, float], digits: int = 2) -> str:
            return (f"{stat['median']:.{digits}f} ({stat['min']:.{digits}f}-"
                    f"{stat['max']:.{digits}f})")
        lines.append(f"| {variant} | {cell(s['train_images_per_s'])} | "
                     f"{cell(s['infer_images_per_s'])} | {cell(s['train_compile_s'], 1)} | "
                     f"{s['peak_memory_mb']['median']:.0f} |")
    if results["train_ratio_vs_keras_tf"] is not None:
        lines += ["", "msunet/Keras-TF train ratio: "
                  f"**{results['train_ratio_vs_keras_tf']:.2f}x** against the fastest Keras/TF "
                  f"variant ({results['fastest_keras_tf']['train']}); inference "
                  f"{results['infer_ratio_vs_keras_tf']:.2f}x against "
                  f"{results['fastest_keras_tf']['infer']}. Against each variant (train): "
                  + ", ".join(f"{v} {r:.2f}x" for v, r in results["train_ratio_vs"].items())
                  + "."]
    iou_spec = results["iou"]["spec"]
    lines += [
        "",
        f"Validation IoU after {iou_spec['steps']} steps (synthetic data, "
        f"{iou_spec['size']}x{iou_spec['size']}, base width {iou_spec['base_filters']}, batch "
        f"{iou_spec['batch']}, Adam {iou_spec['learning_rate']}), mean ± std over seeds "
        f"{results['iou']['seeds']}:",
        "",
        "| model | framework | fg IoU | Dice | pixel accuracy | 2-class mean IoU (paper) |",
        "|---|---|---|---|---|---|",
    ]
    for model, by_framework in results["iou"]["summary"].items():
        for framework, m in by_framework.items():
            lines.append(f"| {model} | {framework} | " + " | ".join(
                f"{m[k]['mean']:.3f} ± {m[k]['std']:.3f}"
                for k in ("iou", "dice", "accuracy", "mean_iou_2class")) + " |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], output_dir: pathlib.Path, suite: str) -> list[str]:
    """Throughput bars and IoU learning curves as PNG files; returns their names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = results["throughput"]["summary"]
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for axis, phase in zip(axes, ("train", "infer"), strict=True):
        stats = [summary[fw][f"{phase}_images_per_s"] for fw in summary]
        medians = [s["median"] for s in stats]
        errors = [[m - s["min"] for m, s in zip(medians, stats, strict=True)],
                  [s["max"] - m for m, s in zip(medians, stats, strict=True)]]
        axis.bar(list(summary), medians, yerr=errors, capsize=4)
        axis.set_title(f"{phase} images/s")
    figure.tight_layout()
    names = [f"{suite}_throughput.png"]
    figure.savefig(output_dir / names[0], dpi=100)
    plt.close(figure)

    runs = results["iou"]["runs"]
    figure, axes = plt.subplots(1, len(runs), figsize=(4.5 * len(runs), 3.5), squeeze=False)
    for axis, (model, by_framework) in zip(axes[0], runs.items(), strict=True):
        for framework, seeds in by_framework.items():
            for index, run in enumerate(seeds):
                axis.plot([p["step"] for p in run["curve"]], [p["iou"] for p in run["curve"]],
                          color="C0" if framework == "jax" else "C1", alpha=0.7,
                          label=framework if index == 0 else None)
        axis.set_title(f"{model}: validation fg IoU")
        axis.set_xlabel("step")
        axis.legend()
    figure.tight_layout()
    names.append(f"{suite}_iou_curves.png")
    figure.savefig(output_dir / names[1], dpi=100)
    plt.close(figure)
    return names


def run_suite(suite: str, output_dir: pathlib.Path,
              variants: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Run a suite (optionally with other throughput variants); write JSON, markdown, plots."""
    config = dict(SUITES[suite], **({"variants": variants} if variants else {}))
    unknown = set(config["variants"]) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown variants {sorted(unknown)}; expected some of {list(VARIANTS)}")
    output_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"suite": suite, "machine": machine()}
    results["throughput"] = run_throughput(config["throughput"], config["variants"],
                                           config["repeats"], config["compile_cache"])
    summary = results["throughput"]["summary"]
    fastest = {phase: fastest_keras_tf(summary, phase) for phase in ("train", "infer")}
    results["fastest_keras_tf"] = fastest
    results["train_ratio_vs_keras_tf"] = (_ratio(summary, "train", fastest["train"])
                                          if fastest["train"] else None)
    results["infer_ratio_vs_keras_tf"] = (_ratio(summary, "infer", fastest["infer"])
                                          if fastest["infer"] else None)
    results["train_ratio_vs"] = {v: _ratio(summary, "train", v) for v in summary if v != "jax"}
    with tempfile.TemporaryDirectory() as init_dir:
        results["iou"] = run_iou(config["iou"], config["iou_models"], config["seeds"],
                                 pathlib.Path(init_dir))
    results["plots"] = plot(results, output_dir, suite)
    (output_dir / f"{suite}.json").write_text(json.dumps(results, indent=2))
    (output_dir / f"{suite}.md").write_text(markdown(results))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=sorted(SUITES), default="quick")
    parser.add_argument("--output-dir", type=pathlib.Path, default=RESULTS)
    parser.add_argument("--variants", default="",
                        help=f"comma-separated throughput variants from {list(VARIANTS)}")
    args = parser.parse_args()
    variants = tuple(args.variants.split(",")) if args.variants else None
    try:
        results = run_suite(args.suite, args.output_dir, variants)
    except ValueError as error:
        sys.exit(f"error: {error}")
    print(markdown(results))


if __name__ == "__main__":
    main()
