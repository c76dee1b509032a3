"""The benchmark suite: its metric code, and the quick suite end to end (needs the bench extra)."""

import json

import numpy as np
import pytest

from tests.conftest import run_module

pytest.importorskip("tensorflow", reason="the benchmarks need the bench extra: "
                    "pip install -e '.[bench]'")

from benchmarks import iou  # noqa: E402
from benchmarks import run as suite  # noqa: E402


def test_scores_pool_pixels_over_batches():
    masks = [np.array([[1, 1, 0, 0]]), np.array([[0, 0, 0, 1]])]
    probabilities = [np.array([[0.9, 0.2, 0.7, 0.1]]), np.array([[0.1, 0.1, 0.4, 0.5]])]
    # tp = 2 (pixels 0 and 7), fp = 1 (pixel 2), fn = 1 (pixel 1), tn = 4
    result = iou.scores(probabilities, masks)
    assert result["iou"] == pytest.approx(2 / 4)
    assert result["dice"] == pytest.approx(4 / 6)
    assert result["accuracy"] == pytest.approx(6 / 8)
    assert result["mean_iou_2class"] == pytest.approx((2 / 4 + 4 / 6) / 2)


def test_headline_ratio_is_against_the_fastest_keras_tf_variant():
    def images_per_s(train, infer):
        return {"train_images_per_s": {"median": train}, "infer_images_per_s": {"median": infer}}

    summary = {"jax": images_per_s(0.4, 1.0), "keras-tf": images_per_s(0.3, 1.5),
               "keras-tf-onednn": images_per_s(0.5, 1.2), "keras-jax": images_per_s(0.9, 3.0)}
    assert suite.fastest_keras_tf(summary, "train") == "keras-tf-onednn"
    assert suite.fastest_keras_tf(summary, "infer") == "keras-tf"
    assert suite.fastest_keras_tf({"jax": summary["jax"]}, "train") is None


def test_unknown_variant_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match=r"unknown variants \['keras-tff'\]"):
        suite.run_suite("quick", tmp_path / "out", ("jax", "keras-tff"))
    assert not (tmp_path / "out").exists()


def test_quick_suite_writes_results(tmp_path):
    process = run_module("benchmarks.run", "--suite", "quick", "--output-dir", str(tmp_path),
                         timeout=1500)
    assert process.returncode == 0, process.stderr[-3000:]
    results = json.loads((tmp_path / "quick.json").read_text())
    summary = results["throughput"]["summary"]
    assert set(summary) == {"jax", "keras-tf"}
    for framework in summary.values():
        assert framework["train_images_per_s"]["median"] > 0
        assert framework["infer_images_per_s"]["min"] <= framework["infer_images_per_s"]["max"]
    assert results["fastest_keras_tf"] == {"train": "keras-tf", "infer": "keras-tf"}
    runs = results["throughput"]["runs"]
    assert [run["host_memory"] for run in runs["jax"]] == ["kept"]
    assert [run["host_memory"] for run in runs["keras-tf"]] == ["default"]
    assert [run["onednn"] for run in runs["keras-tf"]] == ["0"]
    assert results["train_ratio_vs_keras_tf"] == pytest.approx(
        summary["jax"]["train_images_per_s"]["median"]
        / summary["keras-tf"]["train_images_per_s"]["median"])
    for framework, runs in results["iou"]["runs"]["multiresunet"].items():
        assert [run["seed"] for run in runs] == [0], framework
        for run in runs:
            assert all(0 <= point["iou"] <= 1 for point in run["curve"])
    jax_runs = results["iou"]["runs"]["multiresunet"]["jax"]
    assert all(run["same_init_as_keras"] for run in jax_runs)
    assert "train ratio" in (tmp_path / "quick.md").read_text()
    for name in results["plots"]:
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
