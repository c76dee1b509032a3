"""msunet.crossval and the patient-level folds it deals (msunet.data.splits.kfold_cases)."""

import csv
import json

import pytest

from msunet import crossval as crossval_lib
from msunet import figures
from msunet.data.splits import kfold_cases
from msunet.workdir import Workdir
from tests.conftest import SAMPLES
from tests.data.conftest import write_folder


def test_folds_hold_each_patient_out_exactly_once():
    cases = [f"p{i // 3}" for i in range(3 * 13)]  # 13 patients, three images each
    plan = kfold_cases(cases, 5, val_fraction=0.2, seed=0)
    held_out = [case for fold in plan for case in fold["test"]]
    assert sorted(held_out) == sorted(set(cases)), "every patient held out once"
    assert max(len(f["test"]) for f in plan) - min(len(f["test"]) for f in plan) <= 1
    for fold in plan:
        train, val, test = (set(fold[split]) for split in ("train", "val", "test"))
        assert not (train & val or train & test or val & test)
        assert train | val | test == set(cases)
        assert len(val) == round(0.2 * (13 - len(test)))
    assert kfold_cases(cases, 5, 0.2, seed=0) == plan
    assert kfold_cases(cases, 5, 0.2, seed=1) != plan
    with pytest.raises(ValueError, match="14 folds need between 2 and 13"):
        kfold_cases(cases, 14, 0.2, 0)


def test_the_real_samples_folds_never_split_a_patient():
    if not (SAMPLES / "DataWMask.xlsx").is_file():
        pytest.skip(f"no Mini-DDSM samples at {SAMPLES} (set MSUNET_SAMPLES to their folder)")
    from msunet.data import MiniDDSM

    entries = MiniDDSM(SAMPLES).entries
    plan = kfold_cases([entry.case for entry in entries], 5, 0.2, 0)
    fold_of = {case: k for k, fold in enumerate(plan) for case in fold["test"]}
    assert len(fold_of) == len({entry.case for entry in entries}) == 13
    images_per_fold = [sum(fold_of[entry.case] == k for entry in entries) for k in range(5)]
    assert sum(images_per_fold) == len(entries) and min(images_per_fold) > 0


def test_crossval_trains_scores_and_resumes_every_fold(smoke_config, tmp_path, capsys):
    images, masks = write_folder(tmp_path / "data", count=6)
    config = smoke_config.copy_and_resolve_references()
    config.model.name = "unet"  # the fold mechanics do not depend on the model
    config.data.source, config.data.root, config.data.masks_dir = "folder", str(images), str(
        masks)
    config.data.val_fraction = 0.2
    config.train.num_steps = config.train.eval_every = config.train.checkpoint_every = 2
    summary = crossval_lib.crossval(config, tmp_path / "cv", folds=2)
    folds = [json.loads(Workdir(tmp_path / "cv" / f"fold_{k}").splits_file.read_text())
             for k in range(2)]
    assert set(folds[0]["test"]).isdisjoint(folds[1]["test"])
    assert sorted(folds[0]["test"] + folds[1]["test"]) == [f"scan{i}" for i in range(6)]
    with open(tmp_path / "cv" / "out_of_fold.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["case"] for row in rows) == [f"scan{i}" for i in range(6)]
    assert {row["case"] for row in rows if row["fold"] == "0"} == set(folds[0]["test"])
    assert summary["images"] == summary["out_of_fold"]["images"] == 6
    assert [r["step"] for r in summary["per_fold"]] == [2, 2]
    assert summary["std"]["pooled_accuracy"] >= 0
    text = (tmp_path / "cv" / "crossval.md").read_text()
    assert "| mean ± std |" in text and "| all held-out images | 6 | 6 |" in text
    # The README pictures: held-out images with both outlines, and every fold's curves.
    pictures = figures.draw(tmp_path / "cv", tmp_path / "docs", count=2)
    assert [path.name for path in pictures] == ["crossval_examples.png", "crossval_curves.png"]
    assert all(path.read_bytes()[:4] == b"\x89PNG" for path in pictures)
    # A rerun resumes the finished folds (no training) and gives the same summary.
    capsys.readouterr()
    again = crossval_lib.crossval(config, tmp_path / "cv", folds=2)
    assert again == summary
    assert "resumed from step 2" in capsys.readouterr().out


def test_a_changed_fold_plan_is_refused(smoke_config, tmp_path):
    images, masks = write_folder(tmp_path / "data", count=6)
    data = smoke_config.data.copy_and_resolve_references()
    data.source, data.root, data.masks_dir = "folder", str(images), str(masks)
    run = Workdir(tmp_path / "cv" / "fold_0")
    plan = kfold_cases([f"scan{i}" for i in range(6)], 2, 0.2, 0)
    crossval_lib.write_fold_splits(run, data, 0, 2, plan[0])
    crossval_lib.write_fold_splits(run, data, 0, 2, plan[0])  # the same plan: accepted
    with pytest.raises(ValueError, match="holds another split than fold 0 of 3"):
        crossval_lib.write_fold_splits(run, data, 0, 3, plan[1])


def test_examples_spread_from_the_best_dice_to_the_worst():
    rows = [{"lesion_pixels": "0" if i == 3 else "9", "dice": str(i / 10)} for i in range(8)]
    picked = figures.pick_examples(rows, 3)
    assert [row["dice"] for row in picked] == ["0.7", "0.4", "0.0"]  # 0.3 has no lesion
    assert len(figures.pick_examples(rows, 10)) == 7


def test_outlines_are_drawn_in_two_colours():
    import numpy as np

    image = np.full((40, 40), 100, np.uint8)
    reference = np.zeros((40, 40), bool)
    reference[5:15, 5:15] = True
    predicted = np.zeros((40, 40), bool)
    predicted[25:35, 25:35] = True
    picture = figures.outlined(image, reference, predicted)
    assert tuple(picture[5, 10]) == (0, 200, 0) and tuple(picture[25, 30]) == (255, 0, 0)
    assert tuple(picture[20, 20]) == (100, 100, 100)


def test_figures_name_the_missing_cross_validation(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}/out_of_fold.csv not found: run "
                       "msunet.crossval"):
        figures.draw(tmp_path, tmp_path / "docs")
