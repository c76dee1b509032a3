"""The benchmark suite: its metric code, and the quick suite end to end (needs the bench extra)."""

import json

import numpy as np
import pytest

from tests.conftest import run_module

pytest.importorskip("tensorflow", reason="the benchmarks need the bench extra: "
                    "pip install -e '.[bench]'")

from benchmarks import accuracy  # noqa: E402
from benchmarks import run as suite  # noqa: E402

TINY = accuracy.Spec(size=32, base_filters=4, batch=4, max_steps=6, eval_every=3, num_train=16,
                     num_val=8, num_test=8)


def test_scores_pool_pixels_over_batches():
    masks = [np.array([[1, 1, 0, 0]]), np.array([[0, 0, 0, 1]])]
    probabilities = [np.array([[0.9, 0.2, 0.7, 0.1]]), np.array([[0.1, 0.1, 0.4, 0.5]])]
    # tp = 2 (pixels 0 and 7), fp = 1 (pixel 2), fn = 1 (pixel 1), tn = 4
    result = accuracy.scores(probabilities, masks)
    assert result["fg_iou"] == pytest.approx(2 / 4)
    assert result["dice"] == pytest.approx(4 / 6)
    assert result["accuracy"] == pytest.approx(6 / 8)
    assert result["mean_iou_2class"] == pytest.approx((2 / 4 + 4 / 6) / 2)
    p = np.array([0.9, 0.2, 0.7, 0.1, 0.1, 0.1, 0.4, 0.5])
    y = np.array([1, 1, 0, 0, 0, 0, 0, 1])
    bce = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert result["loss"] == pytest.approx(bce)


def test_a_flat_training_loss_stops_the_comparison():
    # Keras' train loss with learning rate 0 (the defect of the old IoU benchmark, seed 0).
    with pytest.raises(RuntimeError, match="training loss did not fall"):
        accuracy.check_loss_fell([0.792, 0.793, 0.792, 0.793, 0.792, 0.793], "keras-tf")
    accuracy.check_loss_fell([0.77, 0.75, 0.72, 0.70, 0.68, 0.65], "jax")


def test_a_keras_optimiser_reset_that_zeroes_the_learning_rate_is_refused():
    trainer = accuracy.KerasTrainer(TINY, 0, None)
    assert trainer.learning_rate() == pytest.approx(TINY.learning_rate)
    trainer.step(next(accuracy.train_batches(TINY, 0)))
    for variable in trainer.model.optimizer.variables:  # what the old benchmark did per seed
        variable.assign(np.zeros(variable.shape, variable.dtype))
    assert trainer.learning_rate() == 0.0
    with pytest.raises(RuntimeError, match="learning rate is 0.0"):
        accuracy.train_to_convergence(TINY, trainer, 0, "keras-tf")


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
        assert [point["step"] for point in run["curve"]] == [3, 6]
        assert all(0 <= point["val_fg_iou"] <= 1 for point in run["curve"])
        assert run["curve"][-1]["train_loss"] < run["curve"][0]["train_loss"], framework
        assert 0 < run["time_to_95"]["wall_s"] <= run["wall_s"]
        assert set(run["test"]) == {"loss", "fg_iou", "dice", "accuracy", "mean_iou_2class"}
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
