"""Where a train step's time goes, per layer class, against this machine's measured limits.

    python -m benchmarks.profile [--size 256] [--batch 8] [--base-filters 32] [--model M]
                                 [--output-dir benchmarks/results]

Records every layer call of one msunet train step (flax `intercept_methods`: each `nn.Conv`,
`BatchNorm` (with its fused ReLU, if any) and `Upsample2x`, with its input shape), then times
each distinct layer alone, compiled as the model compiles it: the forward pass, and forward +
gradients (BatchNorm with batch statistics, as in training). Per layer class (3x3 convolutions
by output width, 1x1 convolutions, transposed convolutions, BatchNorm) it sums time x calls,
FLOPs (convolutions: 2 x multiply-adds, x3 with both gradients; BatchNorm: XLA's count) and
bytes moved (XLA's cost analysis of the compiled layer), and gives the achieved GFLOP/s and GB/s
against this machine's matmul peak and memory bandwidth, measured in the same process. The whole
step and the optimizer update are timed too; what the layers alone do not explain (activations,
concatenations, additions, pooling, the loss, and layers running slower or faster inside the
step than alone) is the remainder. The inference forward pass (BatchNorm folded, as
`msunet.predict` runs it) is timed as a whole.

"What the targets need" reads the suite's msunet/Keras-TF ratios (`--suite-results`, default
`benchmarks/results/full.json`) and turns each of issue 15's goals (train 1.5x, inference 1.2x)
into seconds: how much shorter the step (or forward pass) must be, and for each group of layers
how much it could give at most, were it running at the machine's limit (convolutions at the
matmul peak, BatchNorm at the memory bandwidth), and what fraction of the limit it would need if
it alone closed the gap.

Runs with freed host memory kept, as msunet's command-line tools do (`msunet.hostmem`: without it
every activation-sized pass also page-faults fresh memory, which inflates the memory-bound
layers). Writes `profile.json` and `profile.md` to `--output-dir`. It waits until nothing else
uses the CPU (`benchmarks.run.wait_for_idle`) and records what it saw and the load average.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import json
import os
import pathlib
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from msunet import hostmem
from msunet.config import base_config
from msunet.models.layers import BatchNorm, Upsample2x, folded_batch_norm
from msunet.state import create_train_state
from msunet.training import train_step

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
PROFILED = (nn.Conv, BatchNorm, Upsample2x)
GOALS = {"train": 1.5, "infer": 1.2}  # issue 15: msunet / the fastest Keras-TF variant
WIDE_OUTPUTS = 64  # 3x3 convolutions with at least this many outputs count as wide


def best_seconds(function: Callable[..., Any], *args: Any, repeats: int = 5) -> float:
    """Fastest of `repeats` calls of a compiled function (after one warm-up call)."""
    jax.block_until_ready(function(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(function(*args))
        times.append(time.perf_counter() - start)
    return min(times)


def machine_limits() -> dict[str, float]:
    """float32 matmul GFLOP/s (2048^2, XLA) and memory GB/s: the faster of an XLA elementwise
    pass and a numpy copy split over the cores (each a 256 MB read + write)."""
    a = jax.random.normal(jax.random.key(0), (2048, 2048))
    matmul = best_seconds(jax.jit(jnp.dot), a, a)
    big = jnp.ones((64 * 2**20,), jnp.float32)
    stream = best_seconds(jax.jit(lambda x: x * 2.0 + 1.0), big)
    source, target = np.ones(64 * 2**20, np.float32), np.empty(64 * 2**20, np.float32)
    parts = os.cpu_count() or 1
    chunks = list(zip(np.array_split(target, parts), np.array_split(source, parts), strict=True))
    with concurrent.futures.ThreadPoolExecutor(parts) as pool:
        def copy() -> None:
            list(pool.map(lambda pair: np.copyto(*pair), chunks))

        copied = best_seconds(copy)
    return {"matmul_gflops": 2 * 2048**3 / matmul / 1e9,
            "memory_gb_per_s": 2 * big.nbytes / min(stream, copied) / 1e9}


def layer_class(module: nn.Module) -> str:
    """The row a layer is summed into."""
    if isinstance(module, Upsample2x):
        return "2x2 transposed conv"
    if isinstance(module, BatchNorm):
        return "BatchNorm"
    size = module.kernel_size[0]
    return f"3x3 conv -> {module.features}" if size == 3 else f"{size}x{size} conv"


def layer_key(module: nn.Module, shape: tuple[int, ...]) -> tuple[Any, ...]:
    """What makes two layer calls cost the same (initialisers aside)."""
    if isinstance(module, BatchNorm):
        return ("BatchNorm", module.use_scale, module.relu, shape)
    return (type(module).__name__, module.features, getattr(module, "kernel_size", None), shape)


def record_layers(config: Any, batch: int) -> list[tuple[nn.Module, tuple[int, ...]]]:
    """(unbound layer, input shape) of every profiled layer call of one training forward pass."""
    state = jax.eval_shape(lambda: create_train_state(config, jax.random.key(0)))
    size = config.data.image_size
    calls = []

    def interceptor(next_fun: Callable[..., Any], args: tuple[Any, ...],
                    kwargs: dict[str, Any], context: Any) -> Any:
        if context.method_name == "__call__" and isinstance(context.module, PROFILED):
            calls.append((context.module.clone(parent=None), tuple(args[0].shape)))
        return next_fun(*args, **kwargs)

    def forward(params: Any, batch_stats: Any) -> Any:
        with nn.intercept_methods(interceptor):
            return state.apply_fn({"params": params, "batch_stats": batch_stats},
                                  jnp.zeros((batch, size, size, 1)), train=True,
                                  mutable=["batch_stats"])

    jax.eval_shape(forward, state.params, state.batch_stats)
    return calls


def conv_flops(module: nn.Module, shape: tuple[int, ...]) -> float | None:
    """Forward FLOPs (2 x multiply-adds) of a convolution, None for other layers."""
    pixels = shape[0] * shape[1] * shape[2]
    if isinstance(module, Upsample2x):
        return 2.0 * pixels * 4 * shape[3] * module.features
    if isinstance(module, nn.Conv):
        kh, kw = module.kernel_size
        return 2.0 * pixels * kh * kw * shape[3] * module.features
    return None


def profile_layer(module: nn.Module, shape: tuple[int, ...]) -> dict[str, float]:
    """Forward and forward+gradients seconds, FLOPs and bytes of one layer alone."""
    x = jax.random.normal(jax.random.key(1), shape)
    variables = jax.jit(module.init)(jax.random.key(2), x)
    params, batch_stats = variables["params"], variables.get("batch_stats")

    def forward(params: Any, x: jax.Array) -> jax.Array:
        if batch_stats is None:
            return module.apply({"params": params}, x)
        return module.apply({"params": params, "batch_stats": batch_stats}, x,
                            mutable=["batch_stats"])[0]

    def with_gradients(params: Any, x: jax.Array, output_grad: jax.Array) -> Any:
        output, vjp = jax.vjp(forward, params, x)
        return output, vjp(output_grad)

    output_grad = jnp.ones(jax.eval_shape(forward, params, x).shape)
    row: dict[str, float] = {}
    for phase, function, args in (("forward", forward, (params, x)),
                                  ("train", with_gradients, (params, x, output_grad))):
        compiled = jax.jit(function).lower(*args).compile()
        cost = compiled.cost_analysis() or {}
        row[f"{phase}_s"] = best_seconds(compiled, *args)
        row[f"{phase}_bytes"] = float(cost.get("bytes accessed", 0.0))
        flops = conv_flops(module, shape)
        row[f"{phase}_flops"] = (float(cost.get("flops", 0.0)) if flops is None
                                 else flops * (1 if phase == "forward" else 3))
    return row


def profile(model: str, size: int, batch: int, base_filters: int) -> dict[str, Any]:
    """The per-class table, the whole step, the optimizer and the machine's limits."""
    config = base_config()
    config.model.name, config.model.base_filters = model, base_filters
    config.data.image_size = size
    load_at_start = os.getloadavg()
    limits = machine_limits()
    measured: dict[tuple[Any, ...], dict[str, float]] = {}
    classes: dict[str, dict[str, float]] = {}
    for module, shape in record_layers(config, batch):
        key = layer_key(module, shape)
        if key not in measured:
            measured[key] = profile_layer(module, shape)
        row = classes.setdefault(layer_class(module), {"calls": 0})
        row["calls"] += 1
        for name, value in measured[key].items():
            row[name] = row.get(name, 0.0) + value

    state = create_train_state(config, jax.random.key(0))
    images = jax.random.randint(jax.random.key(3), (batch, size, size, 1), 0, 256, jnp.uint8)
    data = {"image": images, "mask": (images > 200).astype(jnp.uint8)}
    step = jax.jit(functools.partial(train_step, threshold=0.5))
    step_s = best_seconds(lambda: step(state, data)[0].params, repeats=3)
    update = jax.jit(lambda state: state.apply_gradients(grads=state.params))
    optimizer_s = best_seconds(update, state)

    def infer(variables: Any, images: jax.Array) -> jax.Array:
        with folded_batch_norm():
            return state.apply_fn(variables, images, train=False)

    variables = {"params": state.params, "batch_stats": state.batch_stats}
    infer_s = best_seconds(jax.jit(infer), variables, images.astype(jnp.float32) / 255.0)

    layers_s = sum(row["train_s"] for row in classes.values())
    for row in classes.values():
        row["share_of_step"] = row["train_s"] / step_s
        row["train_gflops_per_s"] = row["train_flops"] / row["train_s"] / 1e9
        row["train_gb_per_s"] = row["train_bytes"] / row["train_s"] / 1e9
        row["of_matmul_peak"] = row["train_gflops_per_s"] / limits["matmul_gflops"]
        row["of_memory_bandwidth"] = row["train_gb_per_s"] / limits["memory_gb_per_s"]
    return {"model": model, "size": size, "batch": batch, "base_filters": base_filters,
            "load_average_at_start": load_at_start, "device": str(jax.devices()[0]),
            "xla_flags": os.environ.get("XLA_FLAGS", ""), "machine": limits,
            "step_s": step_s, "optimizer_s": optimizer_s, "infer_s": infer_s,
            "remainder_s": step_s - layers_s - optimizer_s,
            "classes": dict(sorted(classes.items(), key=lambda item: -item[1]["train_s"]))}


def layer_group(name: str) -> str:
    """The group a layer class belongs to in "what the targets need"."""
    if name.startswith("3x3 conv -> "):
        wide = int(name.removeprefix("3x3 conv -> ")) >= WIDE_OUTPUTS
        return (f"3x3 convs, >= {WIDE_OUTPUTS} outputs" if wide
                else f"3x3 convs, < {WIDE_OUTPUTS} outputs")
    return {"1x1 conv": "1x1 convs", "2x2 transposed conv": "transposed convs"}.get(name, name)


def same_share_needed(groups: list[dict[str, float]], total_s: float) -> float | None:
    """The smallest share f of their limits at which the groups take `total_s` together, each
    taking min(its time now, its time at the limit / f) (none gets slower); None if not even
    f = 1 does."""
    def total(share: float) -> float:
        return sum(min(group["s"], group["at_limit_s"] / share) for group in groups)

    if total(1.0) > total_s:
        return None
    low, high = 0.0, 1.0
    for _ in range(50):  # bisection: total() falls as the share grows
        middle = (low + high) / 2
        low, high = (low, middle) if total(middle) <= total_s else (middle, high)
    return high


def target_needs(result: dict[str, Any], ratios: dict[str, float]) -> dict[str, Any]:
    """Each goal in seconds: the time msunet's step (forward pass) must lose to reach it, and
    per layer group its time, its time at the machine's limit and the fraction of that limit
    it would need to close the gap alone (None: not even at zero time). The suite's ratio
    scales the profile's own time, so the two measurements need not agree in absolute terms."""
    limits = result["machine"]
    peak, bandwidth = limits["matmul_gflops"] * 1e9, limits["memory_gb_per_s"] * 1e9
    needs = {}
    for target, goal in GOALS.items():
        phase = "train" if target == "train" else "forward"
        now = result["step_s"] if target == "train" else result["infer_s"]
        needed = now * ratios[target] / goal
        gap = now - needed
        groups: dict[str, dict[str, float]] = {}
        for name, row in result["classes"].items():
            if target == "infer" and name == "BatchNorm":
                continue  # folded into the convolutions for inference
            group = groups.setdefault(layer_group(name), {"s": 0.0, "at_limit_s": 0.0})
            group["s"] += row[f"{phase}_s"]
            group["at_limit_s"] += (row[f"{phase}_bytes"] / bandwidth if name == "BatchNorm"
                                    else row[f"{phase}_flops"] / peak)
        for group in groups.values():
            # a group measured at or above the limit (BatchNorm's bandwidth) can give nothing
            group["at_limit_s"] = min(group["at_limit_s"], group["s"])
            left = group["s"] - gap
            group["limit_needed"] = group["at_limit_s"] / left if left > 0 else None
        total, at_limit = (sum(group[key] for group in groups.values())
                           for key in ("s", "at_limit_s"))
        needs[target] = {"goal": goal, "ratio_now": ratios[target], "now_s": now,
                         "needed_s": needed, "gap_s": gap, "all_groups_save_s": total - at_limit,
                         "same_share_needed": same_share_needed(list(groups.values()),
                                                                total - gap),
                         "groups": dict(sorted(groups.items(), key=lambda item: -item[1]["s"]))}
    return needs


def needs_markdown(needs: dict[str, Any], source: str) -> list[str]:
    """The "what the targets need" section."""
    lines = ["", f"## What the targets need (ratios from `{source}`)", ""]
    for target, need in needs.items():
        what = "train step" if target == "train" else "inference forward pass (batch, BN folded)"
        lines += [
            f"**{target} {need['goal']}x** (now {need['ratio_now']:.2f}x): the {what} from "
            f"{need['now_s']:.2f} s to {need['needed_s']:.2f} s, {need['gap_s']:.2f} s shorter.",
            "",
            "| layer group | s now | s at the limit | most it can save | of the limit it needs "
            "to close the gap alone |",
            "|---|---|---|---|---|",
        ]
        for name, group in need["groups"].items():
            alone = (f"{group['limit_needed']:.0%}" if group["limit_needed"] is not None
                     and group["limit_needed"] <= 1 else "out of reach")
            lines.append(f"| {name} | {group['s']:.2f} | {group['at_limit_s']:.2f} | "
                         f"{group['s'] - group['at_limit_s']:.2f} | {alone} |")
        share = need["same_share_needed"]
        verdict = (f"enough, in principle: every group at {share:.0%} of its limit (the same "
                   "share for all, groups already above it left as they are) closes the gap"
                   if need["all_groups_save_s"] >= need["gap_s"]
                   else "not enough: the goal is out of reach at these FLOPs")
        lines += ["", f"Every group at its limit at once would save "
                  f"{need['all_groups_save_s']:.2f} s of the {need['gap_s']:.2f} s: {verdict}.",
                  ""]
    return lines


def markdown(result: dict[str, Any]) -> str:
    """The per-class table and where the rest of the step goes."""
    limits, step = result["machine"], result["step_s"]
    lines = [
        f"Train step of {result['model']} {result['size']}x{result['size']}, batch "
        f"{result['batch']}, base width {result['base_filters']}, float32, on {result['device']}"
        f" (load average at start {', '.join(f'{v:.2f}' for v in result['load_average_at_start'])}"
        f"): **{step:.2f} s** per step. This machine: matmul {limits['matmul_gflops']:.0f} GFLOP/s,"
        f" memory {limits['memory_gb_per_s']:.1f} GB/s. Each layer timed alone, compiled; "
        "forward + gradients as in training.",
        "",
        "| layer class | calls | forward s | forward + grads s | share of step | GFLOP/s | "
        "of matmul peak | GB/s | of bandwidth |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in result["classes"].items():
        lines.append(
            f"| {name} | {row['calls']} | {row['forward_s']:.3f} | {row['train_s']:.3f} | "
            f"{row['share_of_step']:.0%} | {row['train_gflops_per_s']:.0f} | "
            f"{row['of_matmul_peak']:.0%} | {row['train_gb_per_s']:.1f} | "
            f"{row['of_memory_bandwidth']:.0%} |")
    lines += [
        f"| optimizer update (Adam) | 1 | | {result['optimizer_s']:.3f} | "
        f"{result['optimizer_s'] / step:.0%} | | | | |",
        f"| remainder (activations, concatenations, additions, pooling, loss; in-step vs alone) "
        f"| | | {result['remainder_s']:.3f} | {result['remainder_s'] / step:.0%} | | | | |",
        "",
        f"Inference forward pass of the same batch (BatchNorm folded, as `msunet.predict` runs "
        f"it): **{result['infer_s']:.2f} s**.",
    ]
    if "needs" in result:
        lines += needs_markdown(result["needs"], result["suite_results"])
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="multiresunet")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--base-filters", type=int, default=32)
    parser.add_argument("--output-dir", type=pathlib.Path, default=RESULTS)
    parser.add_argument("--suite-results", type=pathlib.Path, default=RESULTS / "full.json",
                        help="the suite results whose msunet/Keras-TF ratios the targets scale "
                             "(the section is left out where the file is absent)")
    parser.add_argument("--from-json", type=pathlib.Path,
                        help="measure nothing: redo the targets section and profile.md of this "
                             "profile.json (after a new suite run)")
    args = parser.parse_args()
    if args.from_json:
        result = json.loads(args.from_json.read_text())
    else:
        hostmem.keep_freed_memory_unless_disabled()  # as msunet's command-line tools run
        from benchmarks.run import wait_for_idle

        idle = wait_for_idle()
        result = profile(args.model, args.size, args.batch, args.base_filters)
        result["idle_check"] = idle
    if args.suite_results.is_file():
        suite = json.loads(args.suite_results.read_text())
        ratios = {"train": suite["train_ratio_vs_keras_tf"],
                  "infer": suite["infer_ratio_vs_keras_tf"]}
        result["suite_results"] = args.suite_results.name
        result["needs"] = target_needs(result, ratios)
    else:
        result.pop("needs", None)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "profile.json").write_text(json.dumps(result, indent=1))
    (args.output_dir / "profile.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
