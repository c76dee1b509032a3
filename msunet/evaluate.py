"""Evaluation of a trained run on one split, in the paper's convention and honestly:
`python -m msunet.evaluate --workdir DIR [--split test] [--checkpoint best|latest]`.

Reads the run's saved config.json and (for real datasets) its saved patient split, scores every
image of the split at the model's resolution (as the paper's Table 1 does) and writes, into
`<workdir>/eval/<split>_<checkpoint>/` (or --output):
- `report.json`: settings and every split-level metric;
- `report.md`: a table in the shape of the paper's Table 1, with the definitions below it;
- `per_image.csv`: one row per image (counts, ratios, HD95, loss).
The threshold is `eval.threshold`, or with `eval.pick_threshold` (--pick_threshold) the
candidate with the highest pooled Dice on the validation split: never chosen on the test split.

External validation: `--data source=miniddsm --data root=OTHER --split all` scores the run's
model on every image of another dataset (the run's `data` config with those fields replaced),
preprocessed as the run's images were; the reports go to
`<workdir>/eval/<source>-<root folder>_all_<checkpoint>/`. Replacing a preprocessing field
(`PREPROCESS_FIELDS`: size, CLAHE, crop, side) is refused, naming the fields, unless
--accept_preprocessing_change says it is on purpose.
"""

from __future__ import annotations

import csv
import json
import math
import pathlib
import sys
from collections.abc import Iterator
from typing import Any

import ml_collections
import numpy as np
from absl import flags, logging

from msunet import cli, hostmem
from msunet import data as data_lib
from msunet.data.cache import PREPROCESS_FIELDS
from msunet.data.pipeline import pad_batch
from msunet.data.splits import ALL, SPLITS
from msunet.inference import Predictor, load_variables
from msunet.losses import get_loss
from msunet.metrics import confusion_counts, image_scores, logit_threshold, ratio, summarize
from msunet.models import MODELS
from msunet.workdir import Workdir

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PER_IMAGE_CSV = "per_image.csv"

DEFINITIONS = """\
Definitions (TP, FP, FN, TN: lesion / background pixels predicted right or wrong, at the
model's resolution, lesion = probability >= threshold):
- Loss: the run's training loss (train.loss; BCE by default) per image, averaged, x100 (the
  unit of the paper's Table 1).
- Accuracy: pixel accuracy (TP + TN) / all pixels, pooled over the split. Lesions cover a few
  percent of a mammogram, so predicting no lesion at all already scores ~97-99 %.
- IoU (2-class mean): the mean of lesion IoU TP / (TP + FP + FN) and background IoU
  TN / (TN + FP + FN), pooled: Keras `MeanIoU(num_classes=2)`, the convention of the paper's
  99.71 % / 95.74 % *if* the paper followed Keras (it does not define its IoU). The background
  IoU is close to 1 on any mammogram, so this number is ~50 % + half the lesion IoU.
- fg IoU: lesion (foreground) IoU TP / (TP + FP + FN). Pooled: counts summed over the split,
  then divided. Per image: computed per image with a lesion, then averaged (a missed lesion
  scores 0); lesion-free images are left out and counted under "lesion-free with a prediction".
- Dice: 2 TP / (2 TP + FP + FN), pooled and per image like fg IoU.
- Sensitivity TP / (TP + FN), specificity TN / (TN + FP), precision TP / (TP + FP): pooled.
- HD95: 95th percentile of the distances from each mask's boundary pixels to the other's
  boundary (both directions together), per image where both masks have lesion pixels, then
  averaged; in model pixels (no data source gives a pixel size in mm).
- Lesion-free with a prediction: share of lesion-free images with any predicted lesion pixel.
  Lesion images missed: share of lesion images without a single true-positive pixel.
"""


def _batches(config: ml_collections.ConfigDict, workdir: Workdir, split: str,
             ) -> Iterator[tuple[list[dict[str, Any]], dict[str, np.ndarray], int]]:
    """(records, batch padded to train.eval_batch_size, number of real rows) over a split."""
    source = data_lib.build_source(config.data, split, **workdir.data_paths(config.data))
    size = config.train.eval_batch_size
    index = 0
    for batch in data_lib.eval_dataset(config.data, source, size):
        count = len(batch["image"])
        records = [source.record(i) for i in range(index, index + count)]
        index += count
        yield records, pad_batch(batch, size), count


def pick_threshold(predictor: Predictor, config: ml_collections.ConfigDict,
                   workdir: Workdir) -> tuple[float, list[dict[str, float]]]:
    """The `eval.threshold_candidates` value with the highest pooled Dice on the *val* split
    (equivalently the highest pooled fg IoU: Dice = 2 IoU / (1 + IoU)), and the whole curve."""
    candidates = [float(t) for t in config.eval.threshold_candidates]
    totals = [dict.fromkeys(("tp", "fp", "fn", "tn"), 0) for _ in candidates]
    for _, batch, count in _batches(config, workdir, "val"):
        logits = predictor.logits(batch["image"])[:count]
        truth = batch["mask"][:count, ..., 0] > 0
        for total, threshold in zip(totals, candidates, strict=True):
            counts = confusion_counts(logits >= logit_threshold(threshold), truth)
            for key in total:
                total[key] += int(counts[key])
    if totals[0]["tp"] + totals[0]["fn"] == 0:
        raise ValueError("cannot pick a threshold on the val split: it has no lesion pixels")
    dice = [float(ratio("dice", total)) for total in totals]
    curve = [{"threshold": t, "val_pooled_dice": d} for t, d in zip(candidates, dice, strict=True)]
    return candidates[int(np.nanargmax(dice))], curve


def score_split(predictor: Predictor, config: ml_collections.ConfigDict,
                workdir: Workdir, split: str, threshold: float) -> list[dict[str, Any]]:
    """One row per image of `split`: path, case, `image_scores` and its loss (train.loss)."""
    loss_fn = get_loss(config.train.loss)
    rows = []
    for records, batch, count in _batches(config, workdir, split):
        logits = predictor.logits(batch["image"])
        masks = batch["mask"][..., 0] > 0
        losses = np.asarray(loss_fn(logits[..., None], masks[..., None]))
        predicted = logits >= logit_threshold(threshold)
        for i in range(count):
            record = records[i]
            rows.append({"index": len(rows), "path": record.get("path", ""),
                         "case": record.get("case", ""),
                         **image_scores(predicted[i], masks[i]),
                         "loss": float(losses[i])})
    return rows


def _finite(value: Any) -> Any:
    """NaN -> None, so report.json is strict JSON."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _percent(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.2f}"


def markdown_report(report: dict[str, Any]) -> str:
    """report.md: the paper-shaped table, image counts, settings and the definitions."""
    m = {key: float("nan") if value is None else value for key, value in report["metrics"].items()}
    model = MODELS[report["model"]].__name__ if report["model"] in MODELS else report["model"]
    hd95 = "n/a" if math.isnan(m["hd95_px"]) else f"{m['hd95_px']:.1f}"
    lines = [
        (f"# Evaluation of {report['workdir']} on {report['split']} images of "
         f"{report['data_source']}:{report['data_root']} (external)" if report.get("external")
         else f"# Evaluation of {report['workdir']} on the {report['split']} split"),
        "",
        f"{report['checkpoint']} checkpoint (step {report['step']}), {m['images']} images at "
        f"{report['image_size']}x{report['image_size']}, threshold {report['threshold']:g} "
        f"({report['threshold_source']}), horizontal-flip TTA "
        f"{'on' if report['tta_hflip'] else 'off'}. Values in percent.",
        "",
        "| Model | Loss | Accuracy | IoU (2-class mean) | fg IoU (pooled) | fg IoU (per image) "
        "| Dice (pooled) | Dice (per image) | Sensitivity | Specificity | Precision "
        "| HD95 (px) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {model} | {100 * report['loss']:.2f} | {_percent(m['pooled_accuracy'])} "
        f"| {_percent(m['pooled_mean_iou_2class'])} | {_percent(m['pooled_fg_iou'])} "
        f"| {_percent(m['per_image_fg_iou'])} | {_percent(m['pooled_dice'])} "
        f"| {_percent(m['per_image_dice'])} | {_percent(m['pooled_sensitivity'])} "
        f"| {_percent(m['pooled_specificity'])} | {_percent(m['pooled_precision'])} "
        f"| {hd95} |",
        "",
        "| Images | with a lesion | lesion-free | lesion-free with a prediction "
        "| lesion images missed | HD95 images |",
        "|---|---|---|---|---|---|",
        f"| {m['images']} | {m['lesion_images']} | {m['lesion_free_images']} "
        f"| {_percent(m['lesion_free_with_prediction'])} "
        f"| {_percent(m['lesion_images_missed'])} | {m['hd95_images']} |",
        "",
        DEFINITIONS,
    ]
    if report.get("threshold_curve"):
        lines += ["Threshold candidates (pooled Dice on the val split): " + ", ".join(
            f"{point['threshold']:g}: {_percent(point['val_pooled_dice'])}"
            for point in report["threshold_curve"]), ""]
    return "\n".join(lines)


def parse_data_overrides(items: list[str]) -> dict[str, str]:
    """["source=miniddsm", "root=/data"] -> {"source": "miniddsm", "root": "/data"}."""
    overrides = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise ValueError(f"--data {item!r}: expected FIELD=VALUE, e.g. --data root=/data")
        overrides[key.strip()] = value.strip()
    return overrides


def external_data(data: ml_collections.ConfigDict, overrides: dict[str, str],
                  accept_preprocessing_change: bool = False) -> ml_collections.ConfigDict:
    """The run's `data` config with `overrides` (strings, converted to each field's type).

    Raises ValueError for an unknown field, a value of the wrong type, or a changed
    preprocessing field (unless `accept_preprocessing_change`): a model scored on images
    prepared otherwise than its training images measures the preparation, not the model.
    """
    data = ml_collections.ConfigDict(data.to_dict())
    changed = {}
    for key, text in overrides.items():
        settings = sorted(k for k in data if not isinstance(data[k], ml_collections.ConfigDict))
        if key not in settings:
            raise ValueError(f"--data {key}=...: data.{key} is not a data setting; expected one "
                             f"of {settings}")
        current = data[key]
        try:
            value = ({"true": True, "false": False}[text.lower()] if isinstance(current, bool)
                     else type(current)(text))
        except (KeyError, ValueError):
            raise ValueError(f"--data {key}={text}: expected a {type(current).__name__} like the "
                             f"run's {current!r}") from None
        if key in PREPROCESS_FIELDS and value != current:
            changed[key] = (current, value)
        data[key] = value
    if changed and not accept_preprocessing_change:
        raise ValueError(
            "the run's model was trained on images prepared with other settings: "
            + ", ".join(f"data.{key} {old!r} (run) vs {new!r}" for key, (old, new)
                        in changed.items())
            + "; drop those --data fields to score with the run's preprocessing, or pass "
            "--accept_preprocessing_change to score this way on purpose")
    return data


def evaluate(workdir: str | pathlib.Path, split: str = "test", checkpoint: str = "best",
             pick_threshold_on_val: bool | None = None,
             output: str | pathlib.Path | None = None,
             data_overrides: dict[str, str] | None = None,
             accept_preprocessing_change: bool = False) -> dict[str, Any]:
    """Score a run's checkpoint on `split`, write report.json, report.md and per_image.csv.

    `pick_threshold_on_val` overrides `eval.pick_threshold` (picked on the run's own val split).
    `data_overrides` ({field: value text}) scores another dataset (`external_data`), usually
    with `split="all"`. Returns the report (as in report.json) with `files`, the paths written.
    """
    run = Workdir(workdir)
    if split not in (*SPLITS, ALL):
        raise ValueError(f"unknown split {split!r}; expected one of {(*SPLITS, ALL)}")
    config = run.load_config()
    scored = config
    if data_overrides:
        scored = config.copy_and_resolve_references()
        scored.data = external_data(config.data, data_overrides, accept_preprocessing_change)
    variables, step = load_variables(workdir, config, checkpoint)
    predictor = Predictor(variables, config)
    pick = config.eval.pick_threshold if pick_threshold_on_val is None else pick_threshold_on_val
    curve: list[dict[str, float]] = []
    if pick:
        threshold, curve = pick_threshold(predictor, config, run)
        source = "picked on the val split by pooled Dice"
        if split == "val":
            source += " (the split scored here: optimistic)"
            logging.warning("the threshold was picked on the val split, the split being scored: "
                            "its scores are optimistic; score --split test for an honest one")
    else:
        threshold, source = float(config.eval.threshold), "eval.threshold"
    rows = score_split(predictor, scored, run, split, threshold)
    report = {
        "workdir": str(workdir), "model": config.model.name, "split": split,
        "checkpoint": checkpoint, "step": step, "data_source": scored.data.source,
        "data_root": scored.data.root, "external": bool(data_overrides),
        "data_overrides": data_overrides or {},
        "image_size": scored.data.image_size, "threshold": threshold,
        "threshold_source": source, "threshold_curve": curve,
        "tta_hflip": bool(config.eval.tta_hflip), "loss_name": config.train.loss,
        "loss": float(np.mean([row["loss"] for row in rows])),
        "metrics": {key: _finite(value) for key, value in summarize(rows).items()},
    }
    if output:
        output = pathlib.Path(output)
    elif data_overrides:
        dataset = f"{scored.data.source}-{pathlib.Path(scored.data.root).name or 'data'}"
        output = run.eval_dir(f"{dataset}_{split}", checkpoint)
    else:
        output = run.eval_dir(split, checkpoint)
    output.mkdir(parents=True, exist_ok=True)
    files = {"json": output / REPORT_JSON, "markdown": output / REPORT_MD,
             "csv": output / PER_IMAGE_CSV}
    files["json"].write_text(json.dumps(report, indent=2) + "\n")
    files["markdown"].write_text(markdown_report(report))
    with open(files["csv"], "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return report | {"files": {key: str(path) for key, path in files.items()}}


def define_flags(values: flags.FlagValues, argv: list[str]) -> None:
    """The command line of `python -m msunet.evaluate`."""
    flags.DEFINE_string("workdir", None, "A training workdir (config.json and checkpoints).",
                        flag_values=values)
    flags.DEFINE_enum("split", "test", [*SPLITS, ALL], "Which split to score; 'all': every "
                      "image of the dataset (another dataset, given with --data).",
                      flag_values=values)
    flags.DEFINE_multi_string("data", [], "FIELD=VALUE: score another dataset, e.g. --data "
                              "source=miniddsm --data root=/other --split all (the run's data "
                              "config with those fields replaced).", flag_values=values)
    flags.DEFINE_boolean("accept_preprocessing_change", False, "Allow --data to change a "
                         "preprocessing field (image size, CLAHE, crop, side) on purpose.",
                         flag_values=values)
    flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "Which checkpoint to score.",
                      flag_values=values)
    flags.DEFINE_boolean("pick_threshold", None, "Choose the threshold on the val split "
                         "(default: eval.pick_threshold of the run's config).",
                         flag_values=values)
    flags.DEFINE_string("output", None, "Folder for the reports (default: "
                        "<workdir>/eval/<split>_<checkpoint>).", flag_values=values)
    flags.mark_flags_as_required(["workdir"], flag_values=values)


def main(argv: list[str]) -> None:
    """Evaluate and print the paper-shaped table; exits non-zero with `error: ...` on failure."""
    args = cli.parse(define_flags, argv)
    with cli.errors():
        hostmem.keep_freed_memory_unless_disabled()
        report = evaluate(args.workdir, args.split, args.checkpoint, args.pick_threshold,
                          args.output, parse_data_overrides(args.data),
                          args.accept_preprocessing_change)
    print(pathlib.Path(report["files"]["markdown"]).read_text())
    print("wrote " + ", ".join(report["files"].values()))


if __name__ == "__main__":
    main(sys.argv)
