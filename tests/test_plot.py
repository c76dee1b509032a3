"""msunet.plot: training curves (loss, accuracy, fg and 2-class IoU) from metrics.jsonl."""

import json
import re

import cv2
import pytest

from msunet.plot import PANELS, plot_training_curves, read_metrics
from msunet.plot import main as plot_main
from msunet.workdir import Workdir


def test_training_writes_curves(smoke_run, tmp_path):
    picture = cv2.imread(str(Workdir(smoke_run).curves_file))
    assert picture is not None and picture.shape[0] > 100 and picture.shape[1] > 300
    again = plot_training_curves(smoke_run, tmp_path / "again.png")
    assert again == tmp_path / "again.png" and again.is_file()


def test_every_panel_reads_logged_keys(smoke_run):
    rows = read_metrics(smoke_run)
    assert all("step" in row for row in rows)
    keys = {key for _, lines in PANELS for key, _, _ in lines}
    assert "fg_iou" in keys and "mean_iou_2class" in keys
    logged = set().union(*rows)
    assert {f"train_{key}" for key in keys} <= logged
    assert {f"val_{key}" for key in keys} <= logged


def test_missing_or_empty_metrics_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_metrics(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="metrics.jsonl not found"):
        plot_training_curves(tmp_path)
    Workdir(tmp_path).metrics_file.write_text(json.dumps({"step": 1, "epoch": 0.5}) + "\n")
    with pytest.raises(ValueError, match="has no train_/val_ metrics"):
        plot_training_curves(tmp_path)


def test_plot_command_in_process(smoke_run, tmp_path, capsys):
    output = tmp_path / "curves.png"
    plot_main(["plot", f"--workdir={smoke_run}", f"--output={output}"])
    assert capsys.readouterr().out.strip() == str(output) and output.is_file()
    missing = tmp_path / "missing"
    with pytest.raises(SystemExit, match=re.escape(f"error: workdir {missing} does not exist")):
        plot_main(["plot", f"--workdir={missing}"])
