"""The benchmark suite (benchmarks.run): its statistics, its variant check, and the quick suite
end to end (that one needs the bench extra: TensorFlow and Keras)."""

import json

import numpy as np
import pytest

from benchmarks import run as suite
from msunet.metrics import TRAIN_METRICS
from tests.conftest import run_module


def test_paired_difference_has_a_t_interval():
    result = suite.paired_difference([0.01, -0.02, 0.004])
    assert result["mean"] == pytest.approx(-0.002)
    half = 4.302653 * np.std([0.01, -0.02, 0.004], ddof=1) / np.sqrt(3)
    assert result["ci95"] == pytest.approx([-0.002 - half, -0.002 + half], rel=1e-5)
    assert suite.paired_difference([0.01])["ci95"] is None


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
    pytest.importorskip("tensorflow", reason="the benchmarks need the bench extra: "
                        "pip install -e '.[bench]'")
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
    runs = results["accuracy"]["runs"]["multiresunet"]
    for framework in ("jax", "keras-tf"):
        (run,) = runs[framework]
        assert run["seed"] == 0 and run["same_init_as_keras"], framework
        assert [point["step"] for point in run["curve"]] == [2, 4, 6]
        # after the first, every validation is a stall (min_delta 1): the rate falls at step 4,
        # and training stops at step 6
        assert [point["learning_rate"] for point in run["curve"]] == pytest.approx(
            [1e-3, 1e-3, 1e-4])
        assert run["stopped_early"], framework
        assert all(0 <= point["val_fg_iou"] <= 1 for point in run["curve"])
        assert run["curve"][-1]["train_loss"] < run["curve"][0]["train_loss"], framework
        assert 0 < run["time_to_95"]["wall_s"] <= run["wall_s"]
        assert set(run["test"]) == {"loss", *TRAIN_METRICS}
    # Same initial weights, same batches: the first validation losses agree closely.
    assert runs["jax"][0]["curve"][0]["val_loss"] == pytest.approx(
        runs["keras-tf"][0]["curve"][0]["val_loss"], rel=1e-2)
    difference = results["accuracy"]["summary"]["multiresunet"]["paired_difference"]
    assert difference["fg_iou"]["per_seed"] == [
        runs["jax"][0]["test"]["fg_iou"] - runs["keras-tf"][0]["test"]["fg_iou"]]
    text = (tmp_path / "quick.md").read_text()
    assert "train ratio" in text and "Paired difference" in text
    for name in results["plots"]:
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_gpu_suite_without_a_gpu_says_so_and_exits_cleanly(tmp_path):
    process = run_module("benchmarks.run", "--suite", "gpu", "--output-dir", str(tmp_path))
    assert process.returncode == 0, process.stderr[-2000:]
    assert "nothing measured: no GPU: JAX sees only ['cpu']" in process.stdout
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_model_flops_utilisation_is_achieved_over_peak():
    results = {"throughput": {"spec": {"batch": 32}, "runs": {"jax": [{
        "device": "NVIDIA H100 80GB HBM3", "train_flops_per_step": 2e14,
        "train": {"images_per_s": [60.0, 64.0, 68.0]}}]}}}
    mfu = suite.model_flops_utilisation(results)
    assert mfu["train_flop_per_s"] == pytest.approx(2e14 * 2)  # 64 images/s = 2 steps/s
    assert mfu["mfu"] == pytest.approx(4e14 / 989e12)
    results["throughput"]["runs"]["jax"][0]["device"] = "cpu"
    assert suite.model_flops_utilisation(results)["mfu"] is None
