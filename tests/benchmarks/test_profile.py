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
    seconds = iter([0.5, 0.01, 0.2])  # the whole step, the optimizer update, inference
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
    assert result["infer_s"] == 0.2
    text = profile.markdown(result)
    assert "| BatchNorm | 19 |" in text and "remainder" in text and "**0.50 s**" in text


def test_target_needs_turn_the_goals_into_seconds_per_layer_group():
    def row(seconds, flops, nbytes=0.0):
        return {"forward_s": seconds / 3, "train_s": seconds, "forward_flops": flops / 3,
                "train_flops": flops, "forward_bytes": nbytes / 3, "train_bytes": nbytes}

    result = {"machine": {"matmul_gflops": 100.0, "memory_gb_per_s": 10.0},
              "step_s": 10.0, "infer_s": 2.0,
              "classes": {"3x3 conv -> 16": row(4.0, 100e9),  # 1 s at the matmul peak
                          "3x3 conv -> 32": row(2.0, 50e9),
                          "3x3 conv -> 128": row(3.0, 270e9),
                          "BatchNorm": row(1.0, 1e6, 9e9)}}  # 0.9 s at the bandwidth
    needs = profile.target_needs(result, {"train": 1.2, "infer": 0.6})
    train = needs["train"]
    assert train["needed_s"] == pytest.approx(8.0) and train["gap_s"] == pytest.approx(2.0)
    narrow = train["groups"]["3x3 convs, < 64 outputs"]
    assert narrow["s"] == pytest.approx(6.0) and narrow["at_limit_s"] == pytest.approx(1.5)
    assert narrow["limit_needed"] == pytest.approx(1.5 / 4.0)  # 6 s -> 4 s at 1.5 s of work
    wide = train["groups"]["3x3 convs, >= 64 outputs"]
    assert wide["limit_needed"] == pytest.approx(2.7 / 1.0)  # > 1: not alone
    assert train["groups"]["BatchNorm"]["at_limit_s"] == pytest.approx(0.9)
    assert train["groups"]["BatchNorm"]["limit_needed"] is None  # 1 s - 2 s gap < 0
    assert train["all_groups_save_s"] == pytest.approx(4.5 + 0.3 + 0.1)
    infer = needs["infer"]  # 2 s -> 1 s; BatchNorm is folded away
    assert infer["gap_s"] == pytest.approx(1.0) and "BatchNorm" not in infer["groups"]
    assert infer["all_groups_save_s"] == pytest.approx(1.5 + 0.1)
    text = "\n".join(profile.needs_markdown(needs, "full.json"))
    assert "enough, in principle" in text and "| 3x3 convs, >= 64 outputs | 3.00 | 2.70 |" in text
    needs = profile.target_needs(result, {"train": 1.2, "infer": 0.2})  # gap 1.67 s > 1.6 s
    assert "out of reach at these FLOPs" in "\n".join(profile.needs_markdown(needs, "x"))
