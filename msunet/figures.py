"""README pictures from a cross-validation: `python -m msunet.figures --workdir runs/samples-cv
--output docs/`.

Reads `<workdir>/out_of_fold.csv` (written by `msunet.crossval`) and draws:
- `crossval_examples.png`: held-out mammograms (images with a lesion, from the best to the worst
  by Dice), each predicted by the fold that held its patient out, at the image's own size:
  the reference outline in green, the predicted outline in red, the image's Dice (model
  resolution, as `out_of_fold.csv` scores it) in its title;
- `crossval_curves.png`: every fold's validation loss and fg IoU by step.
"""

from __future__ import annotations

import csv
import math
import pathlib
import sys
from typing import Any

import cv2
import numpy as np
from absl import flags

from msunet import cli
from msunet.data.pipeline import open_source
from msunet.data.preprocess import to_uint8
from msunet.inference import Predictor, load_variables
from msunet.plot import read_metrics
from msunet.workdir import Workdir

REFERENCE_BGR = (0, 200, 0)
PREDICTED_BGR = (0, 0, 255)


def read_out_of_fold(workdir: str | pathlib.Path) -> list[dict[str, str]]:
    """The rows of a cross-validation's out_of_fold.csv (FileNotFoundError names it)."""
    path = pathlib.Path(workdir) / "out_of_fold.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run msunet.crossval with this --workdir "
                                "first")
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def pick_examples(rows: list[dict[str, str]], count: int) -> list[dict[str, str]]:
    """Up to `count` images with a lesion, spread from the best Dice to the worst."""
    lesion = sorted((row for row in rows if float(row["lesion_pixels"]) > 0),
                    key=lambda row: -float(row["dice"]))
    if len(lesion) <= count:
        return lesion
    return [lesion[round(i * (len(lesion) - 1) / (count - 1))] for i in range(count)]


def outlined(image: np.ndarray, reference: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """The image as RGB with the reference (green) and predicted (red) lesion outlines."""
    picture = cv2.cvtColor(to_uint8(np.asarray(image)), cv2.COLOR_GRAY2BGR)
    thickness = max(1, round(max(image.shape[:2]) / 200))
    for mask, colour in ((reference, REFERENCE_BGR), (predicted, PREDICTED_BGR)):
        contours, _ = cv2.findContours(np.asarray(mask, np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(picture, contours, -1, colour, thickness)
    return cv2.cvtColor(picture, cv2.COLOR_BGR2RGB)


def example_panels(workdir: str | pathlib.Path, count: int) -> list[dict[str, Any]]:
    """For each picked image: its outlined picture, case, fold and Dice."""
    panels = []
    predictors: dict[str, tuple[Predictor, Any]] = {}
    for row in pick_examples(read_out_of_fold(workdir), count):
        fold = row["fold"]
        if fold not in predictors:
            run = Workdir(pathlib.Path(workdir) / f"fold_{fold}")
            config = run.load_config()
            variables, _ = load_variables(run.root, config)
            source = open_source(config.data)
            predictors[fold] = (Predictor(variables, config), source)
        predictor, source = predictors[fold]
        index = next(i for i, entry in enumerate(source.entries)
                     if str(entry.image) == row["path"])
        item = source[index]
        prediction = predictor(item["image"])
        panels.append({"picture": outlined(item["image"], item["mask"] > 0, prediction.mask),
                       "case": row["case"], "fold": fold, "dice": float(row["dice"])})
    return panels


def draw_examples(workdir: str | pathlib.Path, output: pathlib.Path, count: int = 6,
                  ) -> pathlib.Path:
    """crossval_examples.png: the picked held-out images with both outlines and their Dice."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = example_panels(workdir, count)
    if not panels:
        raise ValueError(f"{workdir}: no held-out image with a lesion to show")
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.6 * rows),
                                squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for axis, panel in zip(axes.ravel(), panels, strict=False):
        axis.imshow(panel["picture"])
        axis.set_title(f"{panel['case']} (fold {panel['fold']}): Dice {panel['dice']:.2f}",
                       fontsize=9)
    figure.suptitle("held-out patients: reference outline green, prediction red", fontsize=10)
    figure.tight_layout()
    path = output / "crossval_examples.png"
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def draw_curves(workdir: str | pathlib.Path, output: pathlib.Path) -> pathlib.Path:
    """crossval_curves.png: validation loss and fg IoU by step, one line per fold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folds = sorted(pathlib.Path(workdir).glob("fold_*"), key=lambda p: int(p.name[5:]))
    figure, (losses, ious) = plt.subplots(1, 2, figsize=(9, 3.5))
    for fold in folds:
        rows = [row for row in read_metrics(fold) if "val_loss" in row]
        steps = [row["step"] for row in rows]
        losses.plot(steps, [row["val_loss"] for row in rows], marker=".", label=fold.name)
        ious.plot(steps, [row["val_fg_iou"] for row in rows], marker=".", label=fold.name)
    losses.set(title="validation loss", xlabel="step")
    ious.set(title="validation fg IoU", xlabel="step")
    losses.legend(fontsize="small")
    figure.tight_layout()
    path = output / "crossval_curves.png"
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def draw(workdir: str | pathlib.Path, output: str | pathlib.Path, count: int = 6,
         ) -> list[pathlib.Path]:
    """Both figures into `output`; returns their paths."""
    output = pathlib.Path(output)
    output.mkdir(parents=True, exist_ok=True)
    return [draw_examples(workdir, output, count), draw_curves(workdir, output)]


def define_flags(values: flags.FlagValues, argv: list[str]) -> None:
    """The command line of `python -m msunet.figures`."""
    flags.DEFINE_string("workdir", None, "A msunet.crossval workdir.", flag_values=values)
    flags.DEFINE_string("output", "docs", "Folder for the PNGs.", flag_values=values)
    flags.DEFINE_integer("count", 6, "Held-out images to show.", lower_bound=1,
                         flag_values=values)
    flags.mark_flags_as_required(["workdir"], flag_values=values)


def main(argv: list[str]) -> None:
    """Write both PNGs and print their paths; `error: ...` and a non-zero exit on failure."""
    args = cli.parse(define_flags, argv)
    with cli.errors():
        paths = draw(args.workdir, args.output, args.count)
    print("wrote " + ", ".join(map(str, paths)))


if __name__ == "__main__":
    main(sys.argv)
