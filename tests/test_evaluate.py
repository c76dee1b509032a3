"""msunet.evaluate on the shared smoke-trained run: the three reports, agreement with training's
validation, the threshold picked on val (never on test), the paper-shaped table, and clear
errors."""

import csv
import json
import math
import pathlib

import jax
import numpy as np
import pytest

from msunet import evaluate as evaluate_lib
from msunet.evaluate import evaluate, markdown_report
from msunet.metrics import image_scores, summarize
from msunet.state import create_train_state
from msunet.workdir import Workdir
from tests.conftest import run_module


def test_evaluate_writes_all_three_reports(copy_run, smoke_config):
    report = evaluate(copy_run, "test")
    files = {key: pathlib.Path(path) for key, path in report["files"].items()}
    assert {path.parent for path in files.values()} == {Workdir(copy_run).eval_dir("test", "best")}
    saved = json.loads(files["json"].read_text())
    assert saved["split"] == "test" and saved["model"] == "multiresunet"
    assert saved["threshold"] == smoke_config.eval.threshold
    assert (saved["loss_name"], saved["checkpoint"], saved["step"]) == ("bce", "best",
                                                                        report["step"])
    with open(files["csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == smoke_config.data.num_test
    assert rows[0]["path"] == "synthetic://test/0"
    tp, fp, fn, tn = (sum(int(row[key]) for row in rows) for key in ("tp", "fp", "fn", "tn"))
    assert tp + fp + fn + tn == smoke_config.data.num_test * smoke_config.data.image_size ** 2
    metrics = saved["metrics"]
    assert metrics["pooled_accuracy"] == pytest.approx((tp + tn) / (tp + fp + fn + tn))
    assert metrics["pooled_fg_iou"] == pytest.approx(tp / (tp + fp + fn))
    assert saved["loss"] == pytest.approx(np.mean([float(row["loss"]) for row in rows]))
    markdown = files["markdown"].read_text()
    assert "| Model | Loss | Accuracy | IoU (2-class mean) | fg IoU (pooled) |" in markdown
    assert "| MultiResUNet |" in markdown and "Definitions" in markdown


def test_evaluate_agrees_with_training_validation(smoke_run, tmp_path):
    """Scoring the val split reproduces the pooled metrics training logged for the best step."""
    report = evaluate(smoke_run, "val", "best", output=tmp_path)
    rows = [json.loads(line) for line in Workdir(smoke_run).metrics_file.read_text().splitlines()]
    logged = next(row for row in rows if row["step"] == report["step"] and "val_loss" in row)
    metrics = report["metrics"]
    assert metrics["pooled_accuracy"] == pytest.approx(logged["val_accuracy"], abs=1e-6)
    assert metrics["pooled_fg_iou"] == pytest.approx(logged["val_fg_iou"], abs=1e-6)
    assert metrics["pooled_dice"] == pytest.approx(logged["val_dice"], abs=1e-6)
    assert metrics["pooled_mean_iou_2class"] == pytest.approx(logged["val_mean_iou_2class"],
                                                              abs=1e-6)
    assert report["loss"] == pytest.approx(logged["val_loss"], rel=1e-4)


def test_threshold_is_picked_on_val_never_on_test(smoke_run, tmp_path, monkeypatch):
    splits = []
    batches = evaluate_lib._batches

    def spy(config, workdir, split):
        splits.append(split)
        return batches(config, workdir, split)

    monkeypatch.setattr(evaluate_lib, "_batches", spy)
    report = evaluate(smoke_run, "test", "latest", pick_threshold_on_val=True, output=tmp_path)
    assert splits == ["val", "test"]
    curve = report["threshold_curve"]
    assert len(curve) == 19 and "val" in report["threshold_source"]
    best = max(curve, key=lambda point: point["val_pooled_dice"])
    assert report["threshold"] == best["threshold"]
    assert (tmp_path / "report.md").is_file()
    assert "optimistic" not in report["threshold_source"]

    on_val = evaluate(smoke_run, "val", "latest", pick_threshold_on_val=True,
                      output=tmp_path / "v")
    assert "optimistic" in on_val["threshold_source"]


def test_evaluate_unet_run(tmp_path, smoke_config):
    """A U-Net workdir (state saved without training) evaluates the same way."""
    config = smoke_config.copy_and_resolve_references()
    config.model.name = "unet"
    run = Workdir(tmp_path)
    checkpointer = run.checkpointer()
    checkpointer.save_best(0, create_train_state(config, jax.random.key(0)))
    checkpointer.close()
    run.save_config(config)
    report = evaluate(tmp_path)
    assert report["model"] == "unet" and report["metrics"]["images"] == config.data.num_test
    assert "| UNet |" in pathlib.Path(report["files"]["markdown"]).read_text()
    with pytest.raises(FileNotFoundError, match="no latest checkpoint"):
        evaluate(tmp_path, checkpoint="latest")


def test_a_bad_workdir_or_split_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        evaluate(tmp_path)
    with pytest.raises(ValueError, match="unknown split 'holdout'"):
        evaluate(tmp_path, "holdout")


def test_markdown_report_has_the_papers_columns_and_says_what_is_undefined():
    truth = np.zeros((4, 4), bool)
    truth[:2, :2] = True
    empty = np.zeros((4, 4), bool)
    # A lesion missed entirely, and a clean lesion-free image: precision and HD95 undefined.
    rows = [image_scores(empty, truth), image_scores(empty, empty)]
    metrics = {key: None if isinstance(value, float) and math.isnan(value) else value
               for key, value in summarize(rows).items()}
    report = {"workdir": "runs/x", "model": "unet", "split": "test", "checkpoint": "best",
              "step": 12, "image_size": 4, "threshold": 0.35,
              "threshold_source": "picked on the val split by pooled Dice",
              "threshold_curve": [{"threshold": 0.35, "val_pooled_dice": 0.5}],
              "tta_hflip": True, "loss": 0.0123, "metrics": metrics}
    text = markdown_report(report)
    assert text.startswith("# Evaluation of runs/x on the test split")
    assert ("best checkpoint (step 12), 2 images at 4x4, threshold 0.35 (picked on the val "
            "split by pooled Dice), horizontal-flip TTA on.") in text
    assert ("| UNet | 1.23 | 87.50 | 43.75 | 0.00 | 0.00 | 0.00 | 0.00 | 0.00 | 100.00 | n/a "
            "| n/a |") in text
    assert "| 2 | 1 | 1 | 0.00 | 100.00 | 0 |" in text
    assert "Threshold candidates (pooled Dice on the val split): 0.35: 50.00" in text
    assert "Definitions" in text


def test_evaluate_command_prints_the_table(smoke_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MSUNET_KEEP_FREED_MEMORY", "0")  # leave this process's malloc alone
    evaluate_lib.main(["evaluate", f"--workdir={smoke_run}", "--split=val",
                       "--checkpoint=latest", f"--output={tmp_path}"])
    out = capsys.readouterr().out
    assert "| Model | Loss | Accuracy |" in out and "latest checkpoint (step 8)" in out
    assert f"wrote {tmp_path / 'report.json'}" in out


def test_cli_error_names_the_missing_workdir(tmp_path):
    missing = tmp_path / "nowhere"
    result = run_module("msunet.evaluate", f"--workdir={missing}")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in result.stderr
    assert str(missing) in result.stderr


# --- another dataset (external validation) -----------------------------------------------------

def plain_folder_copy(root, count=4):
    """`count` real Mini-DDSM samples with lesions, as a plain folder: images/ and masks/
    (filled, 0/255) with the same file names, the way another site's data often comes."""
    import cv2

    from msunet.data import MiniDDSM
    from tests.conftest import SAMPLES

    if not (SAMPLES / "DataWMask.xlsx").is_file():
        pytest.skip(f"no Mini-DDSM samples at {SAMPLES} (set MSUNET_SAMPLES to their folder)")
    source = MiniDDSM(SAMPLES)
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    with_lesion = [i for i, entry in enumerate(source.entries) if entry.masks][:count]
    for i in with_lesion:
        item = source[i]
        name = pathlib.Path(item["path"]).name
        assert cv2.imwrite(str(images / name), item["image"])
        assert cv2.imwrite(str(masks / name), (item["mask"] > 0).astype(np.uint8) * 255)
    return images, masks


def test_a_run_scores_every_image_of_another_dataset(copy_run, tmp_path):
    images, masks = plain_folder_copy(tmp_path / "site2")
    overrides = {"source": "folder", "root": str(images), "masks_dir": str(masks)}
    report = evaluate(copy_run, "all", data_overrides=overrides)
    folder = Workdir(copy_run).eval_dir("folder-images_all", "best")
    assert {pathlib.Path(path).parent for path in report["files"].values()} == {folder}
    assert report["external"] and report["data_source"] == "folder"
    assert report["data_root"] == str(images) and report["image_size"] == 64
    with open(folder / "per_image.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(pathlib.Path(row["path"]).name for row in rows) == sorted(
        path.name for path in images.iterdir())
    assert all(int(row["tp"]) + int(row["fn"]) > 0 for row in rows), "every copy has a lesion"
    assert report["metrics"]["images"] == 4
    assert "(external)" in (folder / "report.md").read_text().splitlines()[0]
    # The run's own reports and config are untouched.
    assert Workdir(copy_run).load_config().data.source == "synthetic"


def test_another_datasets_preprocessing_must_match_the_runs(smoke_config):
    data = smoke_config.data
    with pytest.raises(ValueError, match=r"data.image_size 64 \(run\) vs 128.*"
                       r"--accept_preprocessing_change"):
        evaluate_lib.external_data(data, {"root": "/x", "image_size": "128"})
    changed = evaluate_lib.external_data(data, {"image_size": "128", "crop_breast": "false"},
                                         accept_preprocessing_change=True)
    assert (changed.image_size, changed.crop_breast, data.image_size) == (128, False, 64)
    with pytest.raises(ValueError, match="data.augment is not a data setting"):
        evaluate_lib.external_data(data, {"augment": "none"})
    with pytest.raises(ValueError, match="image_size=big: expected a int"):
        evaluate_lib.external_data(data, {"image_size": "big"})
    with pytest.raises(ValueError, match="expected FIELD=VALUE"):
        evaluate_lib.parse_data_overrides(["root"])


def test_the_command_refuses_a_preprocessing_change_naming_the_field(smoke_run, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        evaluate_lib.main(["evaluate", "--workdir", str(smoke_run), "--split", "all",
                           "--data", "source=folder", "--data", f"root={tmp_path}",
                           "--data", "clahe_clip_limit=3.0"])
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "data.clahe_clip_limit 2.0 (run) vs 3.0" in message
