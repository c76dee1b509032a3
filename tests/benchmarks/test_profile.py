"""benchmarks.profile: every layer call of a step is recorded, classed, costed and summed."""

import json

import flax.linen as nn
import pytest

from benchmarks import profile
from msunet.config import base_config
from msunet.models.layers import batch_norm
from tests.conftest import run_module


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
                          # 1.2 s at the measured bandwidth: already faster, it can give nothing
                          "BatchNorm": row(1.0, 1e6, 12e9)}}
    needs = profile.target_needs(result, {"train": 1.2, "infer": 0.6})
    train = needs["train"]
    assert train["needed_s"] == pytest.approx(8.0) and train["gap_s"] == pytest.approx(2.0)
    narrow = train["groups"]["3x3 convs, < 64 outputs"]
    assert narrow["s"] == pytest.approx(6.0) and narrow["at_limit_s"] == pytest.approx(1.5)
    assert narrow["limit_needed"] == pytest.approx(1.5 / 4.0)  # 6 s -> 4 s at 1.5 s of work
    wide = train["groups"]["3x3 convs, >= 64 outputs"]
    assert wide["limit_needed"] == pytest.approx(2.7 / 1.0)  # > 1: not alone
    assert train["groups"]["BatchNorm"]["at_limit_s"] == pytest.approx(1.0)
    assert train["groups"]["BatchNorm"]["limit_needed"] is None  # 1 s - 2 s gap < 0
    assert train["all_groups_save_s"] == pytest.approx(4.5 + 0.3)
    # 8 s in all at a share f: min(6, 1.5 / f) + min(3, 2.7 / f) + 1 = 8 at f = 0.375 (wide as now)
    assert train["same_share_needed"] == pytest.approx(0.375)
    infer = needs["infer"]  # 2 s -> 1 s; BatchNorm is folded away
    assert infer["gap_s"] == pytest.approx(1.0) and "BatchNorm" not in infer["groups"]
    assert infer["all_groups_save_s"] == pytest.approx(1.5 + 0.1)
    text = "\n".join(profile.needs_markdown(needs, "full.json"))
    assert "every group at 38% of its limit" in text
    assert "| 3x3 convs, >= 64 outputs | 3.00 | 2.70 |" in text
    needs = profile.target_needs(result, {"train": 1.2, "infer": 0.2})  # gap 1.67 s > 1.6 s
    assert "out of reach at these FLOPs" in "\n".join(profile.needs_markdown(needs, "x"))


def test_the_targets_section_is_redone_from_a_saved_profile(tmp_path):
    saved = {"model": "multiresunet", "size": 256, "batch": 8, "base_filters": 32,
             "load_average_at_start": [0.1, 0.2, 0.3], "device": "cpu:0",
             "machine": {"matmul_gflops": 100.0, "memory_gb_per_s": 10.0},
             "step_s": 10.0, "infer_s": 2.0, "optimizer_s": 0.1, "remainder_s": 0.5,
             "classes": {"3x3 conv -> 16": {
                 "calls": 2, "forward_s": 1.0, "train_s": 3.0, "forward_flops": 50e9,
                 "train_flops": 150e9, "forward_bytes": 0.0, "train_bytes": 0.0,
                 "share_of_step": 0.3, "train_gflops_per_s": 50.0, "train_gb_per_s": 0.0,
                 "of_matmul_peak": 0.5, "of_memory_bandwidth": 0.0}}}
    (tmp_path / "profile.json").write_text(json.dumps(saved))
    (tmp_path / "suite.json").write_text(json.dumps(
        {"train_ratio_vs_keras_tf": 1.2, "infer_ratio_vs_keras_tf": 0.6}))
    process = run_module("benchmarks.profile", "--from-json", str(tmp_path / "profile.json"),
                         "--suite-results", str(tmp_path / "suite.json"),
                         "--output-dir", str(tmp_path / "out"))
    assert process.returncode == 0, process.stderr[-2000:]
    redone = json.loads((tmp_path / "out" / "profile.json").read_text())
    assert redone["needs"]["train"]["needed_s"] == pytest.approx(8.0)
    text = (tmp_path / "out" / "profile.md").read_text()
    assert "(ratios from `suite.json`)" in text and "**10.00 s** per step" in text
