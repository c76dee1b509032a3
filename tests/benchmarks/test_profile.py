"""benchmarks.profile: every layer call of a step is recorded, classed, costed and summed."""

import flax.linen as nn
import pytest

from benchmarks import profile
from msunet.config import base_config
from msunet.models.layers import batch_norm


def tiny_config(model):
    config = base_config()
    config.model.name, config.model.base_filters = model, 4
    config.data.image_size = 32
    return config


def test_every_layer_call_of_a_training_pass_is_recorded():
    calls = profile.record_layers(tiny_config("unet"), batch=2)
    classes = [profile.layer_class(module) for module, _ in calls]
    # U-Net: 9 double convs (18 3x3 convs, each with a BatchNorm), 4 upsamplings, the 1x1 head.
    assert sum(name.startswith("3x3 conv") for name in classes) == 18
    assert classes.count("BatchNorm") == 19
    assert classes.count("2x2 transposed conv") == 4 and classes.count("1x1 conv") == 1
    shapes = {profile.layer_class(m): shape for m, shape in calls}
    assert shapes["1x1 conv"] == (2, 32, 32, 4)
    assert profile.conv_flops(*calls[0]) == 2.0 * 2 * 32 * 32 * 9 * 1 * 4


def test_one_layer_alone_is_timed_and_costed():
    conv = nn.Conv(8, (3, 3), padding="SAME", use_bias=False)
    row = profile.profile_layer(conv, (2, 16, 16, 4))
    assert row["forward_flops"] == 2.0 * 2 * 16 * 16 * 9 * 4 * 8
    assert row["train_flops"] == 3 * row["forward_flops"]
    assert row["forward_s"] > 0 and row["train_s"] > 0
    assert row["train_bytes"] > row["forward_bytes"] > 0
    norm = profile.profile_layer(batch_norm(True), (2, 16, 16, 8))
    assert norm["forward_flops"] > 0 and norm["train_s"] > 0


def test_the_profile_sums_classes_and_accounts_for_the_step(monkeypatch):
    monkeypatch.setattr(profile, "machine_limits",
                        lambda: {"matmul_gflops": 100.0, "memory_gb_per_s": 10.0})
    monkeypatch.setattr(profile, "profile_layer", lambda module, shape: {
        "forward_s": 0.001, "train_s": 0.003, "forward_flops": 1e6, "train_flops": 3e6,
        "forward_bytes": 1e5, "train_bytes": 3e5})
    seconds = iter([0.5, 0.01])  # the whole step, then the optimizer update
    monkeypatch.setattr(profile, "best_seconds", lambda *args, **kwargs: next(seconds))
    result = profile.profile("unet", size=32, batch=2, base_filters=4)
    rows = result["classes"]
    assert {name: row["calls"] for name, row in rows.items() if not name.startswith("3x3")} == {
        "BatchNorm": 19, "2x2 transposed conv": 4, "1x1 conv": 1}
    assert sum(row["calls"] for row in rows.values()) == 42
    assert rows["BatchNorm"]["train_s"] == pytest.approx(19 * 0.003)
    assert rows["BatchNorm"]["share_of_step"] == pytest.approx(19 * 0.003 / 0.5)
    assert rows["BatchNorm"]["train_gflops_per_s"] == pytest.approx(1.0)  # 3e6 / 0.003 s
    assert rows["BatchNorm"]["of_matmul_peak"] == pytest.approx(0.01)
    assert result["remainder_s"] == pytest.approx(0.5 - 42 * 0.003 - 0.01)
    text = profile.markdown(result)
    assert "| BatchNorm | 19 |" in text and "remainder" in text and "**0.50 s**" in text
