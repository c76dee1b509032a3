"""benchmarks.conv_layers: every MultiResUNet convolution shape timed with msunet's fast layers
and with flax/lax's, and the markdown table of them."""

import json
import sys

from benchmarks import conv_layers


def test_conv_layer_benchmark_times_every_layer_both_ways(monkeypatch):
    monkeypatch.setattr(conv_layers, "LAYERS", [(3, 3, 4, 1), (1, 3, 4, 2), (2, 3, 4, 2)])
    rows = conv_layers.measure(size=16, batch=1)
    assert [row["input"] for row in rows] == ["1x16x16", "1x8x8", "1x8x8"]
    assert all(row[key] > 0 for row in rows for key in row if key.endswith("_ms"))
    assert conv_layers.markdown(rows).count("x |") == 3


def test_the_table_is_written_from_saved_results(tmp_path, monkeypatch):
    row = {"layer": "3x3 51->32", "input": "8x256x256", "reference_forward_ms": 276.0,
           "reference_train_ms": 3196.0, "msunet_forward_ms": 277.0, "msunet_train_ms": 1412.0}
    saved = tmp_path / "conv_layers.json"
    saved.write_text(json.dumps({"size": 256, "batch": 8, "device": "cpu:0", "layers": [row]}))
    monkeypatch.setattr(sys, "argv", ["conv_layers", "--table-from", str(saved)])
    conv_layers.main()
    table = (tmp_path / "conv_layers.md").read_text()
    assert "input batch 8, on cpu:0" in table
    assert "| 3x3 51->32 | 8x256x256 | 276 / 277 | 3196 / 1412 | 2.3x |" in table
