"""evaluate, predict and plot on one smoke-trained run; clear errors for bad inputs."""

import csv
import json
import pathlib
import re

import cv2
import jax
import numpy as np
import pytest

from msunet import evaluate as evaluate_lib
from msunet.checkpointing import Checkpointer
from msunet.data.files import BadSampleError
from msunet.evaluate import evaluate
from msunet.plot import main as plot_main
from msunet.plot import plot_training_curves
from msunet.predict import (
    Predictor,
    load_run_config,
    load_variables,
    mean_probability_logit,
    predict,
    read_input,
    save_prediction,
    sliding_window_probabilities,
    window_starts,
)
from msunet.predict import main as predict_main
from msunet.train import CONFIG_FILE, create_train_state, train_and_evaluate
from tests.conftest import SAMPLES, run_module


@pytest.fixture(scope="module")
def run(tmp_path_factory, smoke_config):
    """One smoke-trained MultiResUNet workdir, shared by this module's tests."""
    workdir = tmp_path_factory.mktemp("smoke_run")
    train_and_evaluate(smoke_config, workdir)
    return workdir


@pytest.fixture(scope="module")
def sample_image():
    images = sorted(path for path in SAMPLES.glob("*/*/*.png")
                    if "mask" not in path.stem.lower()) if SAMPLES.is_dir() else []
    if not images:
        pytest.skip(f"no Mini-DDSM samples at {SAMPLES} (set MSUNET_SAMPLES to their folder)")
    return images[0]


def test_training_writes_curves(run):
    picture = cv2.imread(str(run / "training_curves.png"))
    assert picture is not None and picture.shape[0] > 100 and picture.shape[1] > 300
    again = plot_training_curves(run, run / "again.png")
    assert again.is_file()


def test_evaluate_writes_all_three_reports(run, smoke_config):
    report = evaluate(run, "test")
    files = {key: pathlib.Path(path) for key, path in report["files"].items()}
    saved = json.loads(files["json"].read_text())
    assert saved["split"] == "test" and saved["model"] == "multiresunet"
    assert saved["threshold"] == smoke_config.eval.threshold
    with open(files["csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == smoke_config.data.num_test
    tp, fp, fn, tn = (sum(int(row[key]) for row in rows) for key in ("tp", "fp", "fn", "tn"))
    assert tp + fp + fn + tn == smoke_config.data.num_test * smoke_config.data.image_size ** 2
    metrics = saved["metrics"]
    assert metrics["pooled_accuracy"] == pytest.approx((tp + tn) / (tp + fp + fn + tn))
    assert metrics["pooled_fg_iou"] == pytest.approx(tp / (tp + fp + fn))
    assert saved["loss"] == pytest.approx(np.mean([float(row["loss"]) for row in rows]))
    markdown = files["markdown"].read_text()
    assert "| Model | Loss | Accuracy | IoU (2-class mean) | fg IoU (pooled) |" in markdown
    assert "| MultiResUNet |" in markdown and "Definitions" in markdown


def test_evaluate_agrees_with_training_validation(run):
    """Scoring the val split reproduces the pooled metrics training logged for the best step."""
    report = evaluate(run, "val", "best")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    logged = next(row for row in rows if row["step"] == report["step"] and "val_loss" in row)
    metrics = report["metrics"]
    assert metrics["pooled_accuracy"] == pytest.approx(logged["val_accuracy"], abs=1e-6)
    assert metrics["pooled_fg_iou"] == pytest.approx(logged["val_iou"], abs=1e-6)
    assert metrics["pooled_mean_iou_2class"] == pytest.approx(logged["val_mean_iou_2class"],
                                                              abs=1e-6)
    assert report["loss"] == pytest.approx(logged["val_loss"], rel=1e-4)


def test_threshold_is_picked_on_val_never_on_test(run, tmp_path, monkeypatch):
    splits = []
    batches = evaluate_lib._batches

    def spy(config, workdir, split):
        splits.append(split)
        return batches(config, workdir, split)

    monkeypatch.setattr(evaluate_lib, "_batches", spy)
    report = evaluate(run, "test", "latest", pick_threshold_on_val=True, output=tmp_path)
    assert splits == ["val", "test"]
    curve = report["threshold_curve"]
    assert len(curve) == 19 and "val" in report["threshold_source"]
    best = max(curve, key=lambda point: point["val_pooled_dice"])
    assert report["threshold"] == best["threshold"]
    assert (tmp_path / "report.md").is_file()
    assert "optimistic" not in report["threshold_source"]

    on_val = evaluate(run, "val", "latest", pick_threshold_on_val=True, output=tmp_path / "v")
    assert "optimistic" in on_val["threshold_source"]


def test_evaluate_unet_run(tmp_path, smoke_config):
    """A U-Net workdir (state saved without training) evaluates the same way."""
    config = smoke_config.copy_and_resolve_references()
    config.model.name = "unet"
    checkpointer = Checkpointer(tmp_path)
    checkpointer.save_best(0, create_train_state(config, jax.random.key(0)))
    checkpointer.close()
    (tmp_path / CONFIG_FILE).write_text(config.to_json_best_effort())
    report = evaluate(tmp_path)
    assert report["model"] == "unet" and report["metrics"]["images"] == config.data.num_test
    assert "| U-Net |" in pathlib.Path(report["files"]["markdown"]).read_text()
    with pytest.raises(FileNotFoundError, match="no latest checkpoint"):
        evaluate(tmp_path, checkpoint="latest")


def test_predict_real_mammogram_keeps_its_size(run, sample_image, tmp_path):
    image = read_input(sample_image)
    config = load_run_config(run)
    variables, _ = load_variables(run, config)
    prediction = predict(variables, image, config)
    assert prediction.mask.shape == image.shape and prediction.mask.dtype == bool
    assert prediction.probability.shape == image.shape
    assert 0.0 <= prediction.probability.min() <= prediction.probability.max() <= 1.0

    # The same scan at 16 bits gives the same probabilities (a map that varies, so an empty
    # prediction could not pass by accident).
    assert prediction.probability.std() > 0
    deep = tmp_path / "deep.png"
    cv2.imwrite(str(deep), image.astype(np.uint16) * 257)
    assert read_input(deep).dtype == np.uint16
    np.testing.assert_allclose(predict(variables, read_input(deep), config).probability,
                               prediction.probability, atol=1e-6)

    # Trained on whole images: the sliding window is one window at training scale, the same
    # prediction as the whole image.
    config.eval.sliding_window = True
    np.testing.assert_allclose(Predictor(variables, config)(image).probability,
                               prediction.probability, atol=1e-6)

    # Trained on patches (the README's recipe, scaled down): tiles of the patch size.
    config.data.patch_size = config.data.image_size // 2
    config.eval.tta_hflip = True
    tiled = Predictor(variables, config)(image)
    assert tiled.mask.shape == image.shape

    written = save_prediction(tiled, image, tmp_path / "out", "scan", probability=True)
    for path in written.values():
        assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape[:2] == image.shape


def test_sliding_window_blending_reproduces_a_position_independent_map():
    """Tiles of a per-pixel function, blended, give back that function exactly."""
    image = np.random.default_rng(0).integers(0, 256, (100, 130), dtype=np.uint8)
    calls = []

    def probabilities(tiles):
        calls.append(len(tiles))
        return tiles.astype(np.float32) / 255.0

    blended = sliding_window_probabilities(image, 32, 0.5, probabilities)
    np.testing.assert_allclose(blended, image / 255.0, atol=1e-6)
    assert calls == [len(window_starts(100, 32, 0.5)) * len(window_starts(130, 32, 0.5))]
    assert window_starts(100, 32, 0.5) == [0, 16, 32, 48, 64, 68]
    with pytest.raises(ValueError, match="overlap"):
        window_starts(100, 32, 1.0)


def test_tta_mean_probability_logit():
    first, second = np.array([-30.0, -2.0, 0.5, 40.0]), np.array([-31.0, 3.0, 0.5, 45.0])
    combined = np.asarray(jax.nn.sigmoid(mean_probability_logit(first, second)))
    expected = (np.asarray(jax.nn.sigmoid(first)) + np.asarray(jax.nn.sigmoid(second))) / 2
    np.testing.assert_allclose(combined, expected, rtol=1e-5)
    assert np.isfinite(np.asarray(mean_probability_logit(first, second))).all()


def test_bad_inputs_in_process(run, tmp_path):
    garbage = tmp_path / "scan.png"
    garbage.write_text("not a picture")
    with pytest.raises(BadSampleError, match="scan.png: unreadable"):
        read_input(garbage)
    with pytest.raises(BadSampleError, match="notes.txt: not an image file"):
        read_input(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        evaluate(tmp_path)
    with pytest.raises(FileNotFoundError, match="metrics.jsonl not found"):
        plot_training_curves(tmp_path)
    missing = tmp_path / "missing"
    with pytest.raises(SystemExit, match=re.escape(f"error: workdir {missing} does not exist")):
        plot_main(["plot", f"--workdir={missing}"])


def expect_error(result, *fragments):
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def test_cli_errors_name_the_path(run, tmp_path):
    missing = tmp_path / "nowhere"
    expect_error(run_module("msunet.evaluate", f"--workdir={missing}"), str(missing))

    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    expect_error(run_module("msunet.predict", f"--workdir={run}", f"--input={notes}",
                            f"--output={tmp_path / 'out'}"), str(notes), "not an image")

    no_checkpoint = tmp_path / "fresh"
    no_checkpoint.mkdir()
    (no_checkpoint / CONFIG_FILE).write_text((run / CONFIG_FILE).read_text())
    image = tmp_path / "scan.png"
    cv2.imwrite(str(image), np.full((80, 80), 100, np.uint8))
    expect_error(run_module("msunet.predict", f"--workdir={no_checkpoint}", f"--input={image}",
                            f"--output={tmp_path / 'out'}"),
                 "no best checkpoint", str(no_checkpoint))


def test_predict_cli_writes_mask_and_overlay(run, sample_image, tmp_path):
    predict_main(["predict", f"--workdir={run}", f"--input={sample_image}",
                  f"--output={tmp_path}", "--probability"])
    height, width = cv2.imread(str(sample_image), cv2.IMREAD_UNCHANGED).shape[:2]
    mask = cv2.imread(str(tmp_path / f"{sample_image.stem}_mask.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (height, width) and set(np.unique(mask)) <= {0, 255}
    overlay = cv2.imread(str(tmp_path / f"{sample_image.stem}_overlay.png"))
    assert overlay.shape == (height, width, 3)
    assert (tmp_path / f"{sample_image.stem}_probability.png").is_file()
