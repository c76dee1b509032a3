"""benchmarks.conv_libraries: the model's convolutions found in its program, each compiled with
YNNPACK and with Eigen, and the table of them."""

import json
import sys

import jax.numpy as jnp

from benchmarks import conv_libraries


def test_the_convolutions_are_the_models_own():
    shapes = conv_libraries.model_convolutions(size=32, batch=2, width=4)
    # width 4: MultiResBlock widths (1, 2, 3) at level 0, the first one reading the image.
    assert shapes[(2, 32, 32, 1), (3, 3, 1, 1)] == 1
    assert all(lhs[0] == 2 and kernel[:2] == (3, 3) for lhs, kernel in shapes)
    # 9 MultiResBlocks of three 3x3 convolutions each, plus one per ResPath stage (4+3+2+1).
    assert sum(shapes.values()) == 9 * 3 + 10


def test_the_eigen_options_keep_convolutions_out_of_ynnpack():
    x, k = jnp.ones((1, 16, 16, 32)), jnp.ones((3, 3, 32, 32))
    default = conv_libraries.compiled_convolution(x, k, "ynnpack").as_text()
    eigen = conv_libraries.compiled_convolution(x, k, "eigen").as_text()
    assert "__ynn_fusion" in default
    assert "__ynn_fusion" not in eigen and "convolution(" in eigen


def test_every_layer_is_timed_both_ways_and_summed():
    rows = conv_libraries.measure(size=32, batch=1, width=4)
    assert all(row["ynnpack_ms"] > 0 and row["eigen_ms"] > 0 for row in rows)
    sums = conv_libraries.totals(rows)
    assert sums["faster per layer"] <= min(sums["ynnpack"], sums["eigen"])
    assert conv_libraries.markdown(rows).count("\n| 3x3 ") == len(rows)


def test_the_table_is_written_from_saved_results(tmp_path, monkeypatch):
    row = {"layer": "3x3 17->26", "input": "8x256x256x17", "calls": 2, "gflop": 4.17,
           "ynnpack_ms": 134.6, "eigen_ms": 40.5}
    saved = tmp_path / "conv_libraries.json"
    saved.write_text(json.dumps({"size": 256, "batch": 8, "width": 32, "machine": "cpu X",
                                 "load_average_before": [0.1, 0.2, 0.3], "layers": [row]}))
    monkeypatch.setattr(sys, "argv", ["conv_libraries", "--table-from", str(saved)])
    conv_libraries.main()
    table = (tmp_path / "conv_libraries.md").read_text()
    assert "on cpu X; load average at the start 0.10, 0.20, 0.30" in table
    assert "| 3x3 17->26 | 8x256x256x17 | 2 | 134.6 (31) | 40.5 (103) | Eigen |" in table
    assert "YNNPACK (the default) 269 ms, Eigen 81 ms, the faster per layer 81 ms." in table
