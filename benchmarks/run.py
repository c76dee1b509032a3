"""The benchmark suite: msunet (JAX) against the Keras reference, throughput and accuracy.

    python -m benchmarks.run --suite quick      # every stage at tiny shapes (plumbing check)
    python -m benchmarks.run --suite full       # 256x256 batch 8 throughput (~30 min here)
    python -m benchmarks.run --suite accuracy   # both models and frameworks, early stopping
    python -m benchmarks.run --suite gpu        # msunet on one GPU, bfloat16 (exits 0 without)

Every measurement runs in its own subprocess (`benchmarks.throughput`, `benchmarks.accuracy`),
one at a time; with `wait_for_idle` (full, accuracy) each starts only once the CPU is idle, and
what was seen is recorded beside it. Writes to `--output-dir` (default benchmarks/results/):
`<suite>.json` (throughput headline: `train_ratio_vs_keras_tf`, msunet's median train images/s
over the fastest Keras/TF variant's; accuracy: test scores per model and framework and
`paired_difference`), `<suite>.md` (tables) and PNG plots.

Throughput variants: `jax` is msunet as its command-line tools run it (freed host memory kept,
`msunet.hostmem`); Keras/TF runs with TensorFlow's oneDNN switch off (`keras-tf`, its default on
CPUs without AVX-512), on (`keras-tf-onednn`), and each of those with msunet's host-memory
setting (`keras-tf-kept`, `keras-tf-onednn-kept`), so that the ratio is against TensorFlow's best
showing on the machine.
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
import time
from importlib import metadata
from typing import Any

from benchmarks import accuracy, throughput

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

# name -> (framework, host memory, environment); see the module docstring.
VARIANTS: dict[str, tuple[str, str, dict[str, str]]] = {
    "jax": ("jax", "kept", {}),
    "jax-default-malloc": ("jax", "default", {}),
    "keras-tf": ("keras-tf", "default", {"TF_ENABLE_ONEDNN_OPTS": "0"}),
    "keras-tf-onednn": ("keras-tf", "default", {"TF_ENABLE_ONEDNN_OPTS": "1"}),
    "keras-tf-kept": ("keras-tf", "kept", {"TF_ENABLE_ONEDNN_OPTS": "0"}),
    "keras-tf-onednn-kept": ("keras-tf", "kept", {"TF_ENABLE_ONEDNN_OPTS": "1"}),
    "keras-jax": ("keras-jax", "default", {}),
}

SUITES: dict[str, dict[str, Any]] = {
    "quick": {  # a plumbing check of every stage, not a measurement
        "throughput": throughput.Spec(model="unet", size=32, batch=2, base_filters=4,
                                      train_steps=2, infer_steps=2),  # U-Net: compiles fast
        "variants": ("jax", "keras-tf"),
        "repeats": 1,
        "compile_cache": True,  # reuse compiled programs between runs
        # min_delta 1: every validation is a stall, so the rate reduction and the stop both run
        "accuracy": accuracy.Spec(size=32, base_filters=4, batch=4, max_steps=6, eval_every=2,
                                  patience=1, min_delta=1.0, lr_reductions=1,
                                  num_train=16, num_val=8, num_test=8),
        "accuracy_models": ("multiresunet",),
        "seeds": (0,),
        "keras_variant": "keras-tf",
        "wait_for_idle": False,
    },
    "full": {
        # 3 timed steps: the median is robust to the one slow step in which a kept heap grows.
        "throughput": throughput.Spec(size=256, batch=8, base_filters=32, train_steps=3,
                                      infer_steps=2),
        # add keras-jax or jax-default-malloc with --variants (slow here)
        "variants": ("jax", "keras-tf", "keras-tf-onednn", "keras-tf-kept",
                     "keras-tf-onednn-kept"),
        "repeats": 2,
        "compile_cache": False,  # every process compiles, so compile times are honest
        "wait_for_idle": True,
    },
    "accuracy": {
        # Rate / 10 on a validation-loss stall, twice, then early stopping (or max_steps);
        # 48x48 keeps the suite within ~2 h on 2 cores. The wall time is in accuracy.json.
        "accuracy": accuracy.Spec(size=48, base_filters=8, batch=8, max_steps=6000,
                                  eval_every=100, patience=3, min_delta=5e-4,
                                  lr_reductions=2),
        "accuracy_models": ("multiresunet", "unet"),
        "seeds": (0, 1, 2),
        "keras_variant": "keras-tf-onednn",  # the fastest Keras/TF here: honest time-to-accuracy
        "compile_cache": False,
        "wait_for_idle": True,
    },
    "gpu": {  # msunet alone: its step on one GPU, bfloat16 compute, float32 parameters
        "throughput": throughput.Spec(size=256, batch=32, base_filters=32, dtype="bfloat16",
                                      train_steps=10, infer_steps=5),
        "variants": ("jax",),
        "repeats": 1,
        "compile_cache": False,
        "wait_for_idle": False,
        "needs_gpu": True,
    },
}
# Dense bfloat16 peak FLOP/s by device kind (vendor data sheets), for the model FLOPs utilisation.
GPU_PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}
TEST_METRICS = ("fg_iou", "dice", "accuracy", "mean_iou_2class")
PARITY_GOAL = 0.02  # |mean paired fg IoU difference| the accuracy suite aims under


def _spec_args(spec: Any) -> list[str]:
    return [arg for field in dataclasses.fields(spec)
            for arg in (f"--{field.name.replace('_', '-')}", str(getattr(spec, field.name)))]


def run_json(module: str, args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
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
                   compile_cache: bool, idle: bool) -> dict[str, Any]:
    """`repeats` rounds, each measuring every variant once in a fresh process."""
    cache = {} if compile_cache else {"JAX_COMPILATION_CACHE_DIR": ""}
    runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in variants}
    for repeat in range(repeats):
        for variant in variants:
            framework, host_memory, env = VARIANTS[variant]
            print(f"throughput: repeat {repeat + 1}/{repeats}, {variant}", flush=True)
            before = wait_for_idle() if idle else {}
            runs[variant].append({**run_json(
                "benchmarks.throughput", ["--framework", framework, "--host-memory", host_memory,
                                          *_spec_args(spec)], {**cache, **env}), **before})
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


def cpu_busy_fraction(seconds: float = 1.0) -> float:
    """Share of all cores' time spent busy over the next `seconds` (Linux /proc/stat)."""
    def sample() -> tuple[int, int]:
        fields = [int(v) for v in pathlib.Path("/proc/stat").read_text().split()[1:9]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, total

    idle0, total0 = sample()
    time.sleep(seconds)
    idle1, total1 = sample()
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def wait_for_idle(max_busy: float = 0.1, timeout_s: float = 600.0) -> dict[str, Any]:
    """Wait until nothing else uses the CPU (busy share < `max_busy`); return what was seen.

    The 1-minute load average lags a finished process by minutes, so the check samples the
    cores' busy time directly; the load average is recorded beside it.
    """
    waited = 0.0
    busy = cpu_busy_fraction()
    while busy >= max_busy and waited < timeout_s:
        time.sleep(4.0)
        waited += 5.0
        busy = cpu_busy_fraction()
    if busy >= max_busy:
        print(f"warning: the CPU is still {busy:.0%} busy after {timeout_s:.0f} s; timing anyway",
              flush=True)
    return {"cpu_busy_before": busy, "waited_s": waited,
            "load_average_before": os.getloadavg()}


def paired_difference(differences: list[float]) -> dict[str, Any]:
    """Mean of per-seed differences and its 95 % t-interval (None with fewer than 2 seeds)."""
    import scipy.stats

    mean = statistics.mean(differences)
    if len(differences) < 2:
        return {"mean": mean, "ci95": None, "per_seed": differences}
    half = (scipy.stats.t.ppf(0.975, len(differences) - 1) * statistics.stdev(differences)
            / len(differences) ** 0.5)
    return {"mean": mean, "ci95": [mean - half, mean + half], "per_seed": differences}


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.mean(values), "std": statistics.pstdev(values)}


def run_accuracy(spec: accuracy.Spec, models: tuple[str, ...], seeds: tuple[int, ...],
                 keras_variant: str, compile_cache: bool, idle: bool) -> dict[str, Any]:
    """Every (seed, model) trained by Keras then msunet, each run in a fresh process."""
    cache = {} if compile_cache else {"JAX_COMPILATION_CACHE_DIR": ""}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        model: {"keras-tf": [], "jax": []} for model in models}
    with tempfile.TemporaryDirectory() as init_dir:
        for seed in seeds:
            for model in models:
                # Keras first: its MultiResUNet initial weights are imported by the JAX run.
                for framework, variant in (("keras-tf", keras_variant), ("jax", "jax")):
                    print(f"accuracy: seed {seed}, {model}, {variant}", flush=True)
                    before = wait_for_idle() if idle else {}
                    result = run_json("benchmarks.accuracy", [
                        "--framework", framework, "--seed", str(seed), "--init-dir", init_dir,
                        *_spec_args(dataclasses.replace(spec, model=model))],
                        {**cache, **VARIANTS[variant][2]})
                    runs[model][framework].append({**result, "variant": variant, **before})
    summary: dict[str, Any] = {}
    for model, by_framework in runs.items():
        summary[model] = {framework: {
            **{metric: _mean_std([r["test"][metric] for r in results])
               for metric in TEST_METRICS},
            "time_to_95_s": _mean_std([r["time_to_95"]["wall_s"] for r in results]),
            "best_step": _mean_std([r["best"]["step"] for r in results]),
            "steps": _mean_std([r["steps"] for r in results]),
            "stopped_early": sum(r["stopped_early"] for r in results),
            "wall_s": _mean_std([r["wall_s"] for r in results])}
            for framework, results in by_framework.items()}
        difference = {metric: paired_difference([
            j["test"][metric] - k["test"][metric]
            for j, k in zip(by_framework["jax"], by_framework["keras-tf"], strict=True)])
            for metric in TEST_METRICS}
        fg = difference["fg_iou"]
        summary[model]["paired_difference"] = difference
        summary[model]["parity_goal_met"] = bool(
            abs(fg["mean"]) <= PARITY_GOAL and fg["ci95"] is not None
            and fg["ci95"][0] <= 0 <= fg["ci95"][1])
    return {"spec": dataclasses.asdict(spec), "seeds": list(seeds),
            "keras_variant": keras_variant, "summary": summary, "runs": runs}


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


def throughput_markdown(results: dict[str, Any]) -> list[str]:
    """The throughput table and the headline ratio."""
    tp, spec = results["throughput"], results["throughput"]["spec"]
    lines = [
        f"Throughput: {spec['model']} {spec['size']}x{spec['size']}, batch {spec['batch']}, "
        f"base width {spec['base_filters']}, {spec['dtype']}; median (min-max) of "
        f"{tp['repeats']} repeats, each a fresh process.",
        "",
        "| variant | train images/s | inference images/s | train compile s | peak memory MB |",
        "|---|---|---|---|---|",
    ]

    def cell(stat: dict[str, float], digits: int = 2) -> str:
        return f"{stat['median']:.{digits}f} ({stat['min']:.{digits}f}-{stat['max']:.{digits}f})"

    for variant, s in tp["summary"].items():
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
    return lines


def accuracy_markdown(results: dict[str, Any]) -> list[str]:
    """The test-split table, the paired differences and the time to accuracy."""
    acc, spec = results["accuracy"], results["accuracy"]["spec"]
    lines = [
        f"Accuracy: synthetic mammograms {spec['size']}x{spec['size']} ({spec['num_train']} "
        f"train / {spec['num_val']} validation / {spec['num_test']} test images), base width "
        f"{spec['base_filters']}, batch {spec['batch']}, Adam {spec['learning_rate']}, "
        f"BCE; validation every {spec['eval_every']} steps; a stall ({spec['patience']} "
        f"validations without a val-loss gain of {spec['min_delta']}) multiplies the learning "
        f"rate by {spec['lr_factor']}, at most {spec['lr_reductions']} times, and the next "
        f"stall stops training (at most {spec['max_steps']} steps); the lowest-val-loss "
        f"weights scored on **test**; Keras/TF as `{acc['keras_variant']}`; mean ± std over "
        f"seeds {acc['seeds']}.",
        "",
        "| model | framework | test fg IoU | Dice | pixel accuracy | 2-class mean IoU | "
        "best step | steps run | stopped on a stall | time to 95 % (s) | wall (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, by_framework in acc["summary"].items():
        for framework in ("jax", "keras-tf"):
            m = by_framework[framework]
            name = "msunet" if framework == "jax" else "Keras/TF"
            lines.append(f"| {model} | {name} | " + " | ".join(
                f"{m[k]['mean']:.3f} ± {m[k]['std']:.3f}" for k in TEST_METRICS) + " | "
                + " | ".join(f"{m[k]['mean']:.0f} ± {m[k]['std']:.0f}"
                             for k in ("best_step", "steps")) + " | "
                + f"{m['stopped_early']} of {len(acc['seeds'])} | "
                + " | ".join(f"{m[k]['mean']:.0f} ± {m[k]['std']:.0f}"
                             for k in ("time_to_95_s", "wall_s")) + " |")
    lines += ["", "Paired difference msunet - Keras/TF on test (per seed, same data order; "
              "MultiResUNet from the same initial weights), mean [95 % CI]:", "",
              "| model | fg IoU | Dice | pixel accuracy | 2-class mean IoU | "
              f"goal: abs(fg IoU) <= {PARITY_GOAL}, CI contains 0 |",
              "|---|---|---|---|---|---|"]
    for model, by_framework in acc["summary"].items():
        cells = []
        for metric in TEST_METRICS:
            d = by_framework["paired_difference"][metric]
            interval = (f" [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]" if d["ci95"]
                        else " (one seed: no interval)")
            cells.append(f"{d['mean']:+.3f}{interval}")
        lines.append(f"| {model} | " + " | ".join(cells) + " | "
                     + ("met" if by_framework["parity_goal_met"] else "not met") + " |")
    return lines


def markdown(results: dict[str, Any]) -> str:
    """The tables the README shows."""
    info = results["machine"]
    duration = f", {results['wall_s'] / 60:.1f} min in all" if "wall_s" in results else ""
    lines = [f"Suite `{results['suite']}` on {info['cpu']} ({info['cores']} cores), "
             f"{info['date']}{duration}; load average at start "
             f"{', '.join(f'{v:.2f}' for v in info['load_average_at_start'])}; versions "
             f"{info['versions']}.", ""]
    if "throughput" in results:
        lines += throughput_markdown(results) + [""]
    if "accuracy" in results:
        lines += accuracy_markdown(results)
    return "\n".join(lines).rstrip() + "\n"


def plot_throughput(results: dict[str, Any], path: pathlib.Path) -> None:
    """Train and inference images/s per variant, with min-max error bars."""
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
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_accuracy(results: dict[str, Any], path: pathlib.Path) -> None:
    """Validation fg IoU and loss vs step for every run (the plateau), and the test table as
    bars with error bars."""
    import matplotlib.pyplot as plt

    acc = results["accuracy"]
    colours = {"jax": "C0", "keras-tf": "C1"}
    names = {"jax": "msunet", "keras-tf": "Keras/TF"}
    styles = dict(zip(acc["runs"], ("-", "--", ":", "-."), strict=False))
    figure, (curves, losses, bars) = plt.subplots(1, 3, figsize=(16, 4))
    for model, by_framework in acc["runs"].items():
        for framework, runs in by_framework.items():
            for index, run in enumerate(runs):
                steps = [p["step"] for p in run["curve"]]
                style = {"color": colours[framework], "linestyle": styles[model], "alpha": 0.7}
                curves.plot(steps, [p["val_fg_iou"] for p in run["curve"]], **style,
                            label=f"{model}, {names[framework]}" if index == 0 else None)
                losses.plot(steps, [p["val_loss"] for p in run["curve"]], **style)
    curves.set(title="validation fg IoU", xlabel="step", ylabel="fg IoU")
    curves.legend(fontsize=8)
    losses.set(title="validation loss (BCE)", xlabel="step", ylabel="loss", yscale="log")
    groups = [(model, framework) for model in acc["summary"] for framework in ("jax", "keras-tf")]
    width = 0.8 / len(groups)
    for index, (model, framework) in enumerate(groups):
        stats = acc["summary"][model][framework]
        positions = [i + (index - (len(groups) - 1) / 2) * width
                     for i in range(len(TEST_METRICS))]
        bars.bar(positions, [stats[m]["mean"] for m in TEST_METRICS], width,
                 yerr=[stats[m]["std"] for m in TEST_METRICS], capsize=3,
                 color=colours[framework], alpha=1.0 if styles[model] == "-" else 0.55,
                 label=f"{model}, {names[framework]}")
    bars.set_xticks(range(len(TEST_METRICS)), TEST_METRICS)
    bars.set(title="test split, mean ± std over seeds", ylim=(0, 1.05))
    bars.legend(fontsize=8, loc="lower left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def gpu_missing() -> str | None:
    """Why no GPU suite can run here (None: JAX sees a GPU)."""
    import jax

    try:
        jax.devices("gpu")
    except RuntimeError:
        return (f"no GPU: JAX sees only {sorted({d.platform for d in jax.devices()})} devices "
                "here; run this suite on a CUDA machine with jax[cuda12] installed")
    return None


def model_flops_utilisation(results: dict[str, Any]) -> dict[str, Any]:
    """Achieved train FLOP/s (XLA's cost analysis x step rate) against the device's peak."""
    run = results["throughput"]["runs"]["jax"][0]
    steps_per_s = statistics.median(run["train"]["images_per_s"]) / results["throughput"][
        "spec"]["batch"]
    achieved = (run["train_flops_per_step"] or 0.0) * steps_per_s
    peak = next((flops for kind, flops in GPU_PEAK_FLOPS.items() if kind in run["device"]), None)
    return {"device": run["device"], "train_flop_per_s": achieved, "peak_flop_per_s": peak,
            "mfu": achieved / peak if peak else None}


def run_suite(suite: str, output_dir: pathlib.Path,
              variants: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Run a suite's stages (throughput, accuracy); write JSON, markdown and plots."""
    import matplotlib

    matplotlib.use("Agg")
    config = dict(SUITES[suite], **({"variants": variants} if variants else {}))
    unknown = set(config.get("variants", ())) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown variants {sorted(unknown)}; expected some of {list(VARIANTS)}")
    started = time.perf_counter()
    output_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"suite": suite, "machine": machine(), "plots": []}
    if "throughput" in config:
        results["throughput"] = run_throughput(config["throughput"], config["variants"],
                                               config["repeats"], config["compile_cache"],
                                               config["wait_for_idle"])
        summary = results["throughput"]["summary"]
        fastest = {phase: fastest_keras_tf(summary, phase) for phase in ("train", "infer")}
        results["fastest_keras_tf"] = fastest
        results["train_ratio_vs_keras_tf"] = (_ratio(summary, "train", fastest["train"])
                                              if fastest["train"] else None)
        results["infer_ratio_vs_keras_tf"] = (_ratio(summary, "infer", fastest["infer"])
                                              if fastest["infer"] else None)
        results["train_ratio_vs"] = {v: _ratio(summary, "train", v)
                                     for v in summary if v != "jax"}
        plot_throughput(results, output_dir / f"{suite}_throughput.png")
        results["plots"].append(f"{suite}_throughput.png")
        if config.get("needs_gpu"):
            results["model_flops_utilisation"] = model_flops_utilisation(results)
    if "accuracy" in config:
        results["accuracy"] = run_accuracy(
            config["accuracy"], config["accuracy_models"], config["seeds"],
            config["keras_variant"], config["compile_cache"], config["wait_for_idle"])
        name = f"{suite}.png" if "throughput" not in config else f"{suite}_accuracy.png"
        plot_accuracy(results, output_dir / name)
        results["plots"].append(name)
    results["wall_s"] = time.perf_counter() - started
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
    if SUITES[args.suite].get("needs_gpu") and (reason := gpu_missing()):
        print(f"suite {args.suite}: nothing measured: {reason}")
        return
    try:
        results = run_suite(args.suite, args.output_dir, variants)
    except ValueError as error:
        sys.exit(f"error: {error}")
    print(markdown(results))
    if "model_flops_utilisation" in results:
        mfu = results["model_flops_utilisation"]
        print(f"model FLOPs utilisation on {mfu['device']}: {mfu['train_flop_per_s'] / 1e12:.1f}"
              " TFLOP/s" + (f", {mfu['mfu']:.1%} of {mfu['peak_flop_per_s'] / 1e12:.0f}"
                            if mfu["mfu"] is not None else " (peak of this device unknown)"))


if __name__ == "__main__":
    main()
