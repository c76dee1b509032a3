"""Per-layer cost of msunet's convolutions against the lax/flax operations they replace.

    python -m benchmarks.conv_layers [--size 256] [--batch 8] [--output FILE.json]
    python -m benchmarks.conv_layers --table-from FILE.json   # FILE.md from saved results

For the layer shapes that dominate a MultiResUNet train step (base width 32), times the forward
pass and the forward + both gradients (value and grads of <layer(x), g>) of: `lax`'s 3x3 and 1x1
convolutions against `msunet.models.conv.conv_general_dilated`, and flax's 2x2 stride-2
`ConvTranspose` against `msunet.models.layers.Upsample2x`. Prints a markdown table and JSON, so
the speed-up of the train step (`benchmarks.throughput`) can be traced to its layers. With
`--output`, the table is also written beside the JSON (`.md`), for the README.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
from jax import lax

from msunet.models.conv import conv_general_dilated
from msunet.models.layers import Upsample2x

NHWC = ("NHWC", "HWIO", "NHWC")
# (kernel, input channels, output channels, spatial divisor): MultiResUNet's heaviest layers.
LAYERS = [(3, 17, 26, 1), (3, 51, 32, 1), (3, 32, 32, 1), (3, 105, 64, 2), (3, 212, 128, 4),
          (3, 426, 256, 8), (1, 64, 51, 1), (1, 51, 32, 1), (1, 105, 64, 2), (2, 106, 32, 2)]


def median_ms(function: Callable[..., Any], *args: Any, repeats: int = 5) -> float:
    """Median wall time of a compiled call in milliseconds (compiled and run once first)."""
    jax.block_until_ready(function(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(function(*args))
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _with_grads(layer: Callable[[jax.Array, Any], jax.Array]) -> Callable[..., Any]:
    """jit of (x, weights, g) -> (layer(x), d<layer, g>/dx, d<layer, g>/dweights)."""
    def run(x: jax.Array, weights: Any, output_grad: jax.Array) -> Any:
        output, vjp = jax.vjp(layer, x, weights)
        return output, *vjp(output_grad)
    return jax.jit(run)


def _implementations(kernel: int, in_features: int, out_features: int,
                     x: jax.Array) -> tuple[dict[str, Callable[..., Any]], Any]:
    """{"reference": f, "msunet": f} for one layer, each f(x, weights), and the weights."""
    if kernel == 2:
        reference = nn.ConvTranspose(out_features, (2, 2), strides=(2, 2), padding="SAME")
        weights = reference.init(jax.random.key(1), x)
        upsample = Upsample2x(out_features)
        return {"reference": lambda a, w: reference.apply(w, a),
                "msunet": lambda a, w: upsample.apply(w, a)}, weights
    weights = jax.random.normal(jax.random.key(1), (kernel, kernel, in_features, out_features))
    return {
        "reference": lambda a, w: lax.conv_general_dilated(a, w, (1, 1), "SAME",
                                                           dimension_numbers=NHWC),
        "msunet": lambda a, w: conv_general_dilated(a, w, (1, 1), "SAME",
                                                    dimension_numbers=NHWC),
    }, weights


def measure(size: int, batch: int) -> list[dict[str, Any]]:
    """One row per layer: forward and forward+gradients milliseconds of both implementations."""
    rows = []
    for kernel, in_features, out_features, divisor in LAYERS:
        side = size // divisor
        keys = jax.random.split(jax.random.key(0), 2)
        x = jax.random.normal(keys[0], (batch, side, side, in_features))
        out_side = 2 * side if kernel == 2 else side
        output_grad = jax.random.normal(keys[1], (batch, out_side, out_side, out_features))
        implementations, weights = _implementations(kernel, in_features, out_features, x)
        row: dict[str, Any] = {"layer": f"{kernel}x{kernel} {in_features}->{out_features}",
                               "input": f"{batch}x{side}x{side}"}
        for name, layer in implementations.items():
            row[f"{name}_forward_ms"] = median_ms(jax.jit(layer), x, weights)
            row[f"{name}_train_ms"] = median_ms(_with_grads(layer), x, weights, output_grad)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table with the train-pass speed-up."""
    lines = ["| layer | input | forward ms (lax / msunet) | forward + grads ms (lax / msunet) "
             "| speed-up |", "|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['layer']} | {row['input']} | {row['reference_forward_ms']:.0f} / "
            f"{row['msunet_forward_ms']:.0f} | {row['reference_train_ms']:.0f} / "
            f"{row['msunet_train_ms']:.0f} | "
            f"{row['reference_train_ms'] / row['msunet_train_ms']:.1f}x |")
    return "\n".join(lines)


def results_markdown(results: dict[str, Any]) -> str:
    """A saved results file's table, with what it measured."""
    return (f"Median ms per layer, input batch {results['batch']}, on {results['device']}; "
            "forward + grads = the value and both gradients of <layer(x), g>.\n\n"
            f"{markdown(results['layers'])}\n")


def layer_argument_parser(description: str) -> argparse.ArgumentParser:
    """The per-layer benchmarks' common options: --size, --batch, --output, --table-from."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--output", type=pathlib.Path)
    parser.add_argument("--table-from", type=pathlib.Path,
                        help="write the .md of this saved results file and stop")
    return parser


def write_results(path: pathlib.Path, results: dict[str, Any],
                  to_markdown: Callable[[dict[str, Any]], str]) -> None:
    """`path` (JSON) and the .md beside it."""
    path.write_text(json.dumps(results, indent=1))
    path.with_suffix(".md").write_text(to_markdown(results))


def rewrite_table(path: pathlib.Path, to_markdown: Callable[[dict[str, Any]], str]) -> None:
    """The .md of a saved results file, written again (after a change to the table's format)."""
    path.with_suffix(".md").write_text(to_markdown(json.loads(path.read_text())))


def main() -> None:
    args = layer_argument_parser(__doc__.split("\n\n")[0]).parse_args()
    if args.table_from:
        rewrite_table(args.table_from, results_markdown)
        return
    rows = measure(args.size, args.batch)
    print(markdown(rows))
    if args.output:
        results = {"size": args.size, "batch": args.batch, "device": str(jax.devices()[0]),
                   "layers": rows}
        write_results(args.output, results, results_markdown)


if __name__ == "__main__":
    main()
