"""Each 3x3 convolution of MultiResUNet's inference pass under XLA:CPU's two convolution libraries.

    python -m benchmarks.conv_libraries [--size 256] [--batch 8] [--width 32] [--output FILE.json]
    python -m benchmarks.conv_libraries --table-from FILE.json   # FILE.md from saved results

jaxlib 0.10.2 hands float32 convolutions with over 16 input or output channels to YNNPACK
by default (`__ynn_fusion`); without LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION in the compiler
option `xla_cpu_experimental_ynn_fusion_type` they run as Eigen's spatial convolution, as
XLA:CPU did before (the narrower ones always do). The choice is one per compiled program, not
per layer. This benchmark finds the model's convolutions in its lowered program (so the shapes
are the model's, not a list kept by hand), compiles each alone both ways and times it, and adds
up what the whole pass would spend with either library and with the faster one per layer.
With `--output`, the table is also written beside the JSON (`.md`), for the README.
"""

from __future__ import annotations

import collections
import json
import re
from typing import Any

import jax
import numpy as np
from jax import lax

from benchmarks.conv_layers import (
    NHWC,
    layer_argument_parser,
    median_ms,
    rewrite_table,
    write_results,
)

# jaxlib 0.10.2's default YNNPACK fusion types without INDIVIDUAL_CONVOLUTION.
EIGEN_CONVOLUTIONS = {"xla_cpu_experimental_ynn_fusion_type":
                      "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}
LIBRARIES = {"ynnpack": {}, "eigen": EIGEN_CONVOLUTIONS}
_CONVOLUTION = re.compile(r"stablehlo\.convolution.*?:\s*\(tensor<([\dx]+)xf32>,\s*"
                          r"tensor<([\dx]+)xf32>\)")


def model_convolutions(size: int, batch: int, width: int) -> collections.Counter:
    """(input shape, kernel shape) -> calls, for the 3x3 convolutions of the inference pass of
    MultiResUNet as `msunet.inference` runs it (BatchNorm folded)."""
    from msunet.data.preprocess import model_inputs
    from msunet.models import MultiResUNet
    from msunet.models.layers import folded_batch_norm

    model = MultiResUNet(base_filters=width)
    images = np.zeros((batch, size, size, 1), np.uint8)
    variables = model.init(jax.random.key(0), model_inputs(images[:1]), train=False)

    def infer(variables: Any, x: jax.Array) -> jax.Array:
        with folded_batch_norm():
            return model.apply(variables, model_inputs(x), train=False)

    text = jax.jit(infer).lower(variables, images).as_text()
    shapes: collections.Counter = collections.Counter()
    for lhs, rhs in _CONVOLUTION.findall(text):
        kernel = tuple(int(d) for d in rhs.split("x"))
        if kernel[:2] == (3, 3):
            shapes[tuple(int(d) for d in lhs.split("x")), kernel] += 1
    return shapes


def compiled_convolution(inputs: jax.Array, kernel: jax.Array, library: str) -> Any:
    """A SAME stride-1 convolution compiled alone with `library`'s compiler options."""
    def convolve(x: jax.Array, k: jax.Array) -> jax.Array:
        return lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=NHWC)

    return jax.jit(convolve).lower(inputs, kernel).compile(compiler_options=LIBRARIES[library])


def measure(size: int, batch: int, width: int) -> list[dict[str, Any]]:
    """One row per distinct convolution: calls, GFLOP per call and ms under each library."""
    rows = []
    rng = np.random.default_rng(0)
    for (lhs, rhs), calls in sorted(model_convolutions(size, batch, width).items(),
                                    key=lambda item: (-item[0][0][1], item[0][1])):
        inputs = jax.numpy.asarray(rng.standard_normal(lhs, np.float32))
        kernel = jax.numpy.asarray(rng.standard_normal(rhs, np.float32))
        row: dict[str, Any] = {
            "layer": f"3x3 {rhs[2]}->{rhs[3]}", "input": "x".join(map(str, lhs)), "calls": calls,
            "gflop": 2 * np.prod(lhs[:3]) * 9 * rhs[2] * rhs[3] / 1e9}
        for library in LIBRARIES:
            row[f"{library}_ms"] = median_ms(compiled_convolution(inputs, kernel, library),
                                              inputs, kernel)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def totals(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Milliseconds of all the 3x3 convolutions with each library, and with the faster per layer."""
    sums = {library: sum(r["calls"] * r[f"{library}_ms"] for r in rows) for library in LIBRARIES}
    sums["faster per layer"] = sum(
        r["calls"] * min(r[f"{library}_ms"] for library in LIBRARIES) for r in rows)
    return sums


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table (ms and GFLOP/s per library) with the totals under it."""
    lines = ["| layer | input | calls | YNNPACK ms (GFLOP/s) | Eigen ms (GFLOP/s) | faster |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r[f'{lib}_ms']:.1f} ({r['gflop'] / r[f'{lib}_ms'] * 1e3:.0f})"
                 for lib in LIBRARIES]
        faster = "YNNPACK" if r["ynnpack_ms"] <= r["eigen_ms"] else "Eigen"
        lines.append(f"| {r['layer']} | {r['input']} | {r['calls']} | {cells[0]} | {cells[1]} "
                     f"| {faster} |")
    sums = totals(rows)
    lines.append("")
    lines.append("All 3x3 convolutions of one pass: " + ", ".join(
        f"{name} {ms:.0f} ms" for name, ms in
        (("YNNPACK (the default)", sums["ynnpack"]), ("Eigen", sums["eigen"]),
         ("the faster per layer", sums["faster per layer"]))) + ".")
    return "\n".join(lines)


def results_markdown(results: dict[str, Any]) -> str:
    """A saved results file's table, with what it measured and where."""
    return (f"Median ms of each 3x3 convolution of MultiResUNet's inference pass (width "
            f"{results['width']}, batch {results['batch']}, {results['size']}x{results['size']}), "
            f"compiled alone, on {results['machine']}; load average at the start "
            f"{', '.join(f'{v:.2f}' for v in results['load_average_before'])}.\n\n"
            f"{markdown(results['layers'])}\n")


def main() -> None:
    from benchmarks.run import machine, wait_for_idle

    parser = layer_argument_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=32)
    args = parser.parse_args()
    if args.table_from:
        rewrite_table(args.table_from, results_markdown)
        return
    idle = wait_for_idle()
    rows = measure(args.size, args.batch, args.width)
    print(markdown(rows))
    if args.output:
        info = machine()
        results = {"size": args.size, "batch": args.batch, "width": args.width,
                   "machine": f"{info['cpu']} ({info['cores']} cores)",
                   "versions": info["versions"],
                   "load_average_before": list(idle["load_average_before"]),
                   "layers": rows, "totals_ms": totals(rows)}
        write_results(args.output, results, results_markdown)


if __name__ == "__main__":
    main()
