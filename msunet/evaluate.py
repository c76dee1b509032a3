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

from msunet import data as data_lib
from msunet import hostmem
from msunet.cli import parse_flags
from msunet.data.pipeline import SPLITS
from msunet.losses import per_example_bce
from msunet.metrics import image_scores, summarize
from msunet.predict import Predictor, load_run_config, load_variables
from msunet.train import pad_batch

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PER_IMAGE_CSV = "per_image.csv"
MODEL_NAMES = {"multiresunet": "MultiResUNet", "unet": "U-Net"}

DEFINITIONS = """\
Definitions (TP, FP, FN, TN: lesion / background pixels predicted right or wrong, at the
model's resolution, lesion = probability >= threshold):
- Loss: mean binary cross-entropy per image, x100 (the unit of the paper's Table 1).
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


def _batches(config: ml_collections.ConfigDict, workdir: pathlib.Path, split: str,
             ) -> Iterator[tuple[list[dict[str, Any]], dict[str, np.ndarray], int]]:
    """(records, batch padded to train.eval_batch_size, number of real rows) over a split."""
    source = data_lib.build_source(config.data, split, workdir=workdir)
    size = config.train.eval_batch_size
    record = getattr(source, "record", None)  # the real sources' path, case and geometry
    index = 0
    for batch in data_lib.eval_dataset(config.data, source, size):
        count = len(batch["image"])
        records = [record(i) if record else {"path": f"{config.data.source}://{split}/{i}"}
                   for i in range(index, index + count)]
        index += count
        yield records, pad_batch(batch, size), count


def _logit(threshold: float) -> float:
    """The logit at which sigmoid reaches `threshold` (comparing logits as training does)."""
    if not 0 < threshold < 1:
        raise ValueError(f"a threshold must be strictly between 0 and 1, got {threshold}")
    return math.log(threshold) - math.log1p(-threshold)


def pick_threshold(predictor: Predictor, config: ml_collections.ConfigDict,
                   workdir: pathlib.Path) -> tuple[float, list[dict[str, float]]]:
    """The `eval.threshold_candidates` value with the highest pooled Dice on the *val* split
    (equivalently the highest pooled fg IoU: Dice = 2 IoU / (1 + IoU)), and the whole curve."""
    candidates = np.asarray(config.eval.threshold_candidates, np.float64)
    counts = np.zeros((len(candidates), 3))  # TP, FP, FN per candidate
    for _, batch, count in _batches(config, workdir, "val"):
        logits = predictor.logits(batch["image"])[:count]
        truth = batch["mask"][:count, ..., 0] > 0
        for k, threshold in enumerate(candidates):
            predicted = logits >= _logit(threshold)
            counts[k] += [np.count_nonzero(predicted & truth),
                          np.count_nonzero(predicted & ~truth),
                          np.count_nonzero(~predicted & truth)]
    if counts[0, 0] + counts[0, 2] == 0:
        raise ValueError("cannot pick a threshold on the val split: it has no lesion pixels")
    denominators = 2 * counts[:, 0] + counts[:, 1] + counts[:, 2]
    dice = np.divide(2 * counts[:, 0], denominators, out=np.zeros(len(candidates)),
                     where=denominators > 0)
    curve = [{"threshold": float(t), "val_pooled_dice": float(d)}
             for t, d in zip(candidates, dice, strict=True)]
    return float(candidates[int(np.argmax(dice))]), curve


def score_split(predictor: Predictor, config: ml_collections.ConfigDict,
                workdir: pathlib.Path, split: str, threshold: float) -> list[dict[str, Any]]:
    """One row per image of `split`: path, case, `image_scores` and its BCE loss."""
    rows = []
    for records, batch, count in _batches(config, workdir, split):
        logits = predictor.logits(batch["image"])
        masks = batch["mask"][..., 0] > 0
        losses = np.asarray(per_example_bce(logits, masks))
        predicted = logits >= _logit(threshold)
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
    model = MODEL_NAMES.get(report["model"], report["model"])
    hd95 = "n/a" if math.isnan(m["hd95_px"]) else f"{m['hd95_px']:.1f}"
    lines = [
        f"# Evaluation of {report['workdir']} on the {report['split']} split",
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


def evaluate(workdir: str | pathlib.Path, split: str = "test", checkpoint: str = "best",
             pick_threshold_on_val: bool | None = None,
             output: str | pathlib.Path | None = None) -> dict[str, Any]:
    """Score a run's checkpoint on `split`, write report.json, report.md and per_image.csv.

    `pick_threshold_on_val` overrides `eval.pick_threshold`. Returns the report (as in
    report.json) with `files`, the paths written.
    """
    workdir = pathlib.Path(workdir)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    config = load_run_config(workdir)
    variables, step = load_variables(workdir, config, checkpoint)
    predictor = Predictor(variables, config)
    pick = config.eval.pick_threshold if pick_threshold_on_val is None else pick_threshold_on_val
    curve: list[dict[str, float]] = []
    if pick:
        threshold, curve = pick_threshold(predictor, config, workdir)
        source = "picked on the val split by pooled Dice"
        if split == "val":
            source += " (the split scored here: optimistic)"
            logging.warning("the threshold was picked on the val split, the split being scored: "
                            "its scores are optimistic; score --split test for an honest one")
    else:
        threshold, source = float(config.eval.threshold), "eval.threshold"
    rows = score_split(predictor, config, workdir, split, threshold)
    report = {
        "workdir": str(workdir), "model": config.model.name, "split": split,
        "checkpoint": checkpoint, "step": step, "data_source": config.data.source,
        "image_size": config.data.image_size, "threshold": threshold,
        "threshold_source": source, "threshold_curve": curve,
        "tta_hflip": bool(config.eval.tta_hflip),
        "loss": float(np.mean([row["loss"] for row in rows])),
        "metrics": {key: _finite(value) for key, value in summarize(rows).items()},
    }
    output = pathlib.Path(output) if output else workdir / "eval" / f"{split}_{checkpoint}"
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


def _parse(argv: list[str]) -> flags.FlagValues:
    """The command line, in its own FlagValues: msunet.train's flags stay separate."""
    values = flags.FlagValues()
    flags.DEFINE_string("workdir", None, "A training workdir (config.json and checkpoints).",
                        flag_values=values)
    flags.DEFINE_enum("split", "test", list(SPLITS), "Which split to score.", flag_values=values)
    flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "Which checkpoint to score.",
                      flag_values=values)
    flags.DEFINE_boolean("pick_threshold", None, "Choose the threshold on the val split "
                         "(default: eval.pick_threshold of the run's config).",
                         flag_values=values)
    flags.DEFINE_string("output", None, "Folder for the reports (default: "
                        "<workdir>/eval/<split>_<checkpoint>).", flag_values=values)
    flags.mark_flags_as_required(["workdir"], flag_values=values)
    return parse_flags(values, argv)


def main(argv: list[str]) -> None:
    """Evaluate and print the paper-shaped table; exits non-zero with `error: ...` on failure."""
    args = _parse(argv)
    flags.FLAGS.mark_as_parsed()  # grain reads absl flags; this CLI parses its own FlagValues
    logging.set_verbosity(logging.WARNING)
    try:
        hostmem.keep_freed_memory_unless_disabled()
        report = evaluate(args.workdir, args.split, args.checkpoint, args.pick_threshold,
                          args.output)
    except (ValueError, FileNotFoundError, ImportError, OSError) as error:
        sys.exit(f"error: {error}")
    print(pathlib.Path(report["files"]["markdown"]).read_text())
    print("wrote " + ", ".join(report["files"].values()))


if __name__ == "__main__":
    main(sys.argv)
