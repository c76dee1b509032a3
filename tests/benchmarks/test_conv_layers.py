"""benchmarks.conv_layers: every MultiResUNet convolution shape timed with msunet's fast layers
and with flax/lax's, and the markdown table of them."""

from benchmarks import conv_layers


def test_conv_layer_benchmark_times_every_layer_both_ways(monkeypatch):
    monkeypatch.setattr(conv_layers, "LAYERS", [(3, 3, 4, 1), (1, 3, 4, 2), (2, 3, 4, 2)])
    rows = conv_layers.measure(size=16, batch=1)
    assert [row["input"] for row in rows] == ["1x16x16", "1x8x8", "1x8x8"]
    assert all(row[key] > 0 for row in rows for key in row if key.endswith("_ms"))
    assert conv_layers.markdown(rows).count("x |") == 3
