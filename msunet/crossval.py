"""Patient-level k-fold cross-validation:
`python -m msunet.crossval --config configs/samples.py --workdir runs/cv --folds 5`.

The dataset's patients (cases) are dealt into `--folds` test folds (`kfold_cases`: no patient in
two folds, nor in two splits of one fold). Fold k is an ordinary run in `<workdir>/fold_<k>/`:
trained on the other patients with early stopping on a validation part of them
(`data.val_fraction`), then scored on its held-out patients by `msunet.evaluate` (its "test"
split). So every fold resumes, evaluates and plots like any run, and a rerun of the command goes
on where it stopped. The folds share one preprocessed-image cache (`<workdir>/cache`).

Writes `<workdir>/crossval.json`, `crossval.md` (per fold, mean ± std over folds, and all
held-out images pooled: fg IoU and Dice pooled and per image, pixel accuracy, 2-class mean IoU)
and `out_of_fold.csv` (every image once, scored by the fold that held it out).
"""

from __future__ import annotations

import csv
import json
import math
import pathlib
import statistics
import sys
from typing import Any

import ml_collections
from absl import flags
from ml_collections import config_flags

from msunet import cli, hostmem
from msunet.data.pipeline import open_source
from msunet.data.splits import SPLITS, kfold_cases, save_splits
from msunet.evaluate import evaluate
from msunet.metrics import summarize
from msunet.training import train_and_evaluate
from msunet.workdir import Workdir

METRICS = ("pooled_fg_iou", "per_image_fg_iou", "pooled_dice", "per_image_dice",
           "pooled_accuracy", "pooled_mean_iou_2class")
NAMES = ("fg IoU (pooled)", "fg IoU (per image)", "Dice (pooled)", "Dice (per image)",
         "accuracy", "2-class mean IoU")


def fold_settings(data: ml_collections.ConfigDict) -> dict[str, Any]:
    """What a run checks its splits file against (`load_or_create_splits`)."""
    return {"source": data.source, "val_fraction": data.val_fraction,
            "test_fraction": data.test_fraction, "seed": data.split_seed}


def write_fold_splits(run: Workdir, data: ml_collections.ConfigDict, fold: int, folds: int,
                      splits: dict[str, list[str]]) -> None:
    """Give fold `fold`'s run its patient split, or check the one it already has."""
    if run.splits_file.exists():
        saved = json.loads(run.splits_file.read_text())
        if any(saved.get(split) != splits[split] for split in SPLITS):
            raise ValueError(f"{run.splits_file} holds another split than fold {fold} of "
                             f"{folds} now deals (the data or --folds changed); use a new "
                             "workdir")
        return
    save_splits(run.splits_file, fold_settings(data) | {"fold": fold, "folds": folds}, splits)


def _numbers(row: dict[str, str]) -> dict[str, Any]:
    """A per_image.csv row with its numeric columns as floats (empty: NaN)."""
    converted: dict[str, Any] = {}
    for key, value in row.items():
        try:
            converted[key] = float(value) if value != "" else math.nan
        except ValueError:
            converted[key] = value
    return converted


def crossval(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
             folds: int = 5) -> dict[str, Any]:
    """Train and score every fold (resuming finished work), then write the summary files."""
    root = pathlib.Path(workdir)
    config = config.copy_and_resolve_references()
    if not config.data.cache_dir:
        config.data.cache_dir = str(root / "cache")
    cases = [entry.case for entry in open_source(config.data).entries]
    plan = kfold_cases(cases, folds, config.data.val_fraction, config.data.split_seed)
    results, held_out = [], []
    for fold, splits in enumerate(plan):
        run = Workdir(root / f"fold_{fold}")
        write_fold_splits(run, config.data, fold, folds, splits)
        print(f"fold {fold + 1}/{folds}: {len(splits['train'])} train, {len(splits['val'])} "
              f"val, {len(splits['test'])} held-out patients", flush=True)
        train_and_evaluate(config, run)
        report = evaluate(run.root, "test")
        with open(report["files"]["csv"], newline="", encoding="utf-8") as handle:
            rows = [_numbers(row) | {"fold": fold} for row in csv.DictReader(handle)]
        held_out += rows
        results.append({"fold": fold, "test_cases": splits["test"], "step": report["step"],
                        "metrics": report["metrics"]})
    summary = {
        "folds": folds, "cases": len(set(cases)), "images": len(held_out),
        "per_fold": results,
        "mean": {key: _nan_stat(statistics.mean, results, key) for key in METRICS},
        "std": {key: _nan_stat(statistics.pstdev, results, key) for key in METRICS},
        "out_of_fold": {key: value for key, value in summarize(held_out).items()
                        if not (isinstance(value, float) and math.isnan(value))},
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "crossval.json").write_text(json.dumps(summary, indent=1) + "\n")
    (root / "crossval.md").write_text(markdown(summary))
    with open(root / "out_of_fold.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["fold", *[k for k in held_out[0]
                                                               if k != "fold"]])
        writer.writeheader()
        writer.writerows(held_out)
    return summary


def _nan_stat(function: Any, results: list[dict[str, Any]], key: str) -> float | None:
    """`function` over the folds' `key`, leaving out folds where it is undefined (None)."""
    values = [r["metrics"][key] for r in results if r["metrics"].get(key) is not None]
    return function(values) if values else None


def _percent(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def markdown(summary: dict[str, Any]) -> str:
    """The per-fold table, mean ± std over folds, and all held-out images pooled."""
    lines = [f"{summary['folds']}-fold patient-level cross-validation: {summary['cases']} "
             f"patients, {summary['images']} images, each scored once by the fold that held its "
             "patient out (values in percent).", "",
             "| fold | held-out patients | images | " + " | ".join(NAMES) + " |",
             "|---|---|---|" + "---|" * len(NAMES)]
    for result in summary["per_fold"]:
        m = result["metrics"]
        lines.append(f"| {result['fold']} | {len(result['test_cases'])} | {m['images']} | "
                     + " | ".join(_percent(m.get(key)) for key in METRICS) + " |")
    lines.append("| mean ± std | | | " + " | ".join(
        f"{_percent(summary['mean'][key])} ± {_percent(summary['std'][key])}"
        for key in METRICS) + " |")
    oof = summary["out_of_fold"]
    lines.append(f"| all held-out images | {summary['cases']} | {oof['images']} | "
                 + " | ".join(_percent(oof.get(key)) for key in METRICS) + " |")
    return "\n".join(lines) + "\n"


def define_flags(values: flags.FlagValues, argv: list[str]) -> None:
    """The command line of `python -m msunet.crossval`."""
    flags.DEFINE_string("workdir", None, "Folder for the fold runs and the summary.",
                        flag_values=values)
    config_flags.DEFINE_config_file("config", None, "A config file from configs/ (a dataset "
                                    "with patients: miniddsm, cbis, folder).",
                                    flag_values=values, sys_argv=argv, lock_config=True)
    flags.DEFINE_integer("folds", 5, "Number of folds.", lower_bound=2, flag_values=values)
    flags.mark_flags_as_required(["config", "workdir"], flag_values=values)


def main(argv: list[str]) -> None:
    """Cross-validate and print the table; exits non-zero with `error: ...` on failure."""
    args = cli.parse(define_flags, argv)
    with cli.errors():
        hostmem.keep_freed_memory_unless_disabled()
        summary = crossval(args.config, args.workdir, args.folds)
    print(markdown(summary))


if __name__ == "__main__":
    main(sys.argv)
