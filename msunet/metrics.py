"""Segmentation metrics, with their definitions.

Pixels are counted over a whole batch (or split): TP = predicted lesion and true lesion, FP =
predicted lesion on background, FN = missed lesion, TN = background called background.

- pixel accuracy = (TP + TN) / (TP + TN + FP + FN): the paper's "accuracy"; dominated by
  background (lesions cover ~1-3 % of a mammogram), so an all-background model scores ~98 %.
- foreground IoU = TP / (TP + FP + FN): overlap of the lesion masks, the honest headline number.
- Dice = 2 TP / (2 TP + FP + FN).
- 2-class mean IoU = (lesion IoU + background IoU) / 2 with background IoU = TN / (TN + FP + FN),
  as Keras `MeanIoU(num_classes=2)` computes it; the paper's "IoU" is this number *if* it follows
  Keras' convention (the paper does not define it).

The empty-mask rule, one for training, validation and evaluation alike: a ratio whose denominator
is 0 (fg IoU and Dice of pixels with no lesion, truth or predicted) is undefined, NaN, and left
out of means; the 2-class mean IoU averages the classes that are present (Keras' rule), so a
lesion-free image predicted lesion-free scores its background IoU, 1.0. A split without any lesion
pixel therefore has no fg IoU, and training refuses to pick its best checkpoint by one.

One confusion core serves every caller: `confusion_counts` and `RATIOS` (name -> numerator and
denominator of the counts) work on numpy and jax arrays alike, so training's clu metrics
(`SegmentationMetrics`), evaluation, threshold picking and the benchmarks compute each number
from the same definition, under one name (`fg_iou` is foreground IoU everywhere).

During training these are *pooled*: counts summed over every pixel of the split, then divided.
Evaluation (numpy, below the training metrics) adds per-image scores, sensitivity, specificity,
precision, the 95th-percentile Hausdorff distance and an explicit policy for lesion-free images.
"""

# No `from __future__ import annotations`: clu reads the Collection annotations as classes.

import math
from collections.abc import Callable, Mapping
from typing import Any

import cv2
import flax.struct
import jax.numpy as jnp
import numpy as np
import scipy.ndimage
from clu import metrics as clu_metrics

COUNTS = ("tp", "fp", "fn", "tn")
Counts = Mapping[str, Any]  # TP/FP/FN/TN as numbers, numpy or jax arrays

# Each ratio as (numerator, denominator) of the counts; 0/0 is NaN (the empty-mask rule).
RATIOS: dict[str, Callable[[Counts], tuple[Any, Any]]] = {
    "accuracy": lambda c: (c["tp"] + c["tn"], c["tp"] + c["fp"] + c["fn"] + c["tn"]),
    "fg_iou": lambda c: (c["tp"], c["tp"] + c["fp"] + c["fn"]),
    "bg_iou": lambda c: (c["tn"], c["tn"] + c["fp"] + c["fn"]),
    "dice": lambda c: (2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"]),
    "sensitivity": lambda c: (c["tp"], c["tp"] + c["fn"]),
    "specificity": lambda c: (c["tn"], c["tn"] + c["fp"]),
    "precision": lambda c: (c["tp"], c["tp"] + c["fp"]),
}
# What training/validation log (with the loss), and what evaluation reports: every ratio.
TRAIN_METRICS = ("accuracy", "fg_iou", "dice", "mean_iou_2class")
EVAL_METRICS = (*RATIOS, "mean_iou_2class")


def logit_threshold(threshold: float) -> float:
    """The logit at which sigmoid reaches `threshold`: a pixel is lesion when its logit is at
    or above it (comparing logits keeps probabilities that round to 1.0 apart)."""
    if not 0 < threshold < 1:
        raise ValueError(f"a threshold must be strictly between 0 and 1, got {threshold}")
    return math.log(threshold) - math.log1p(-threshold)


def confusion_counts(predicted: Any, truth: Any, weights: Any = None, xp: Any = np,
                     ) -> dict[str, Any]:
    """TP/FP/FN/TN pixel counts of two boolean masks of one shape, numpy (`xp=np`) or jax
    (`xp=jnp`); `weights` (broadcast to the masks) weighs each pixel, e.g. 0 for padding."""
    if predicted.shape != truth.shape:
        raise ValueError(f"predicted mask {predicted.shape} and truth {truth.shape} differ")
    predicted, truth = predicted.astype(bool), truth.astype(bool)
    cells = {"tp": predicted & truth, "fp": predicted & ~truth,
             "fn": ~predicted & truth, "tn": ~predicted & ~truth}
    if weights is None:
        return {key: xp.count_nonzero(cell) for key, cell in cells.items()}
    return {key: xp.sum(cell * weights) for key, cell in cells.items()}


def ratio(name: str, counts: Counts, xp: Any = np) -> Any:
    """The ratio `name` of `counts` (see RATIOS, plus mean_iou_2class); NaN where undefined.

    mean_iou_2class averages lesion and background IoU over the classes whose denominator is
    non-zero, exactly as Keras `MeanIoU(num_classes=2)` does: on a lesion-free image predicted
    lesion-free it is the background IoU alone, 1.0.
    """
    if name == "mean_iou_2class":
        ious = xp.stack([ratio("fg_iou", counts, xp), ratio("bg_iou", counts, xp)])
        present = ~xp.isnan(ious)
        total = xp.where(present, ious, 0.0).sum()
        return xp.where(present.any(), total / xp.maximum(present.sum(), 1), xp.nan)
    if name not in RATIOS:
        raise ValueError(f"unknown metric {name!r}; expected one of "
                         f"{sorted([*RATIOS, 'mean_iou_2class'])}")
    numerator, denominator = RATIOS[name](counts)
    return xp.where(denominator > 0, numerator / xp.maximum(denominator, 1e-12), xp.nan)


def ratios(counts: Counts, names: tuple[str, ...] = EVAL_METRICS) -> dict[str, float]:
    """The named ratios of (numpy or Python) counts, as floats."""
    return {name: float(ratio(name, counts)) for name in names}


@flax.struct.dataclass
class PooledRatio(clu_metrics.Metric):
    """Pixel confusion counts pooled over batches; a subclass made by `of(name)` computes one
    ratio of them.

    Ground truth comes in as `labels=`: clu reserves `mask=` for the example mask, which here
    leaves out padded examples of a last partial batch.
    """

    tp: jnp.ndarray
    fp: jnp.ndarray
    fn: jnp.ndarray
    tn: jnp.ndarray
    NAME = ""

    @classmethod
    def of(cls, name: str) -> type["PooledRatio"]:
        """The clu metric computing ratio `name` (one of RATIOS or mean_iou_2class)."""
        ratio(name, dict.fromkeys(COUNTS, 1.0))  # an unknown name fails here, not in jit
        return flax.struct.dataclass(type(f"Pooled_{name}", (cls,), {"NAME": name}))

    @classmethod
    def from_model_output(cls, *, logits: jnp.ndarray, labels: jnp.ndarray,
                          mask: jnp.ndarray | None = None, threshold: float = 0.5,
                          **_) -> "PooledRatio":
        weights = jnp.ones(logits.shape[0]) if mask is None else mask
        weights = weights.reshape((-1,) + (1,) * (logits.ndim - 1)).astype(jnp.float32)
        return cls(**confusion_counts(logits >= logit_threshold(threshold), labels > 0,
                                      weights, xp=jnp))

    def merge(self, other: "PooledRatio") -> "PooledRatio":
        return type(self)(tp=self.tp + other.tp, fp=self.fp + other.fp,
                          fn=self.fn + other.fn, tn=self.tn + other.tn)

    def compute(self) -> jnp.ndarray:
        if not self.NAME:
            raise NotImplementedError("use PooledRatio.of(name)")
        return ratio(self.NAME, {key: getattr(self, key) for key in COUNTS}, xp=jnp)


@flax.struct.dataclass
class SegmentationMetrics(clu_metrics.Collection):
    """What training and validation report: loss and TRAIN_METRICS, pooled."""

    loss: clu_metrics.Average.from_output("loss")
    accuracy: PooledRatio.of("accuracy")
    fg_iou: PooledRatio.of("fg_iou")
    dice: PooledRatio.of("dice")
    mean_iou_2class: PooledRatio.of("mean_iou_2class")


# --- Evaluation metrics (numpy, per image and over a split) -------------------------------------
#
# Evaluation scores every image on its own and pools the counts over the split:
# - per-image foreground IoU and Dice: computed for each image *with* a lesion, then averaged
#   (an image whose lesion is missed entirely scores 0). Lesion-free images are excluded, since
#   their fg IoU is 0/0; they are reported separately as the share of lesion-free images with
#   any predicted lesion pixel ("false-positive image rate").
# - pooled: TP/FP/FN/TN summed over every pixel of the split, then divided, for EVAL_METRICS.
# - 95th-percentile Hausdorff distance: per image where both masks have lesion pixels (else
#   undefined and left out), then averaged.
# Undefined ratios (0/0) are NaN and left out of means (the empty-mask rule at the top).


def pixel_counts(predicted: np.ndarray, truth: np.ndarray) -> dict[str, int]:
    """TP, FP, FN and TN pixel counts of two boolean numpy masks, as ints."""
    return {key: int(value) for key, value in confusion_counts(predicted, truth).items()}


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


def _surface(mask: np.ndarray) -> np.ndarray:
    """The mask's boundary pixels: lesion pixels with a background 4-neighbour (or the edge)."""
    padded = np.pad(mask.astype(np.uint8), 1)
    inner = cv2.erode(padded, cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)))
    return (padded & (1 - inner)).astype(bool)[1:-1, 1:-1]


def hausdorff95(predicted: np.ndarray, truth: np.ndarray,
                spacing: tuple[float, float] = (1.0, 1.0)) -> float:
    """95th-percentile symmetric Hausdorff distance between the boundaries of two masks.

    For every boundary pixel of each mask, the Euclidean distance to the nearest boundary pixel
    of the other; the result is the 95th percentile of both sets of distances together (MedPy's
    `hd95`), so a few stray pixels do not dominate it as they do the plain maximum. `spacing` is
    the (row, column) pixel size: 1 gives pixels, mm per pixel gives mm. NaN when either mask is
    empty (the distance is undefined).
    """
    predicted, truth = predicted.astype(bool), truth.astype(bool)
    if not predicted.any() or not truth.any():
        return float("nan")
    surfaces = _surface(predicted), _surface(truth)
    distances = [scipy.ndimage.distance_transform_edt(~other, sampling=spacing)[mine]
                 for mine, other in (surfaces, surfaces[::-1])]
    return float(np.percentile(np.concatenate(distances), 95))


def image_scores(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """One image's counts, `ratios`, lesion pixel counts and HD95 in model pixels.

    (No source gives a pixel size in mm, so HD95 is not reported in mm; `hausdorff95` takes a
    spacing for callers that know one.)
    """
    counts = pixel_counts(predicted, truth)
    return {**counts, "lesion_pixels": counts["tp"] + counts["fn"],
            "predicted_pixels": counts["tp"] + counts["fp"], **ratios(counts),
            "hd95_px": hausdorff95(predicted, truth)}


def _nanmean(values: list[float]) -> float:
    finite = [value for value in values if not np.isnan(value)]
    return float(np.mean(finite)) if finite else float("nan")


def summarize(scores: list[dict[str, float]]) -> dict[str, float]:
    """Split-level metrics from `image_scores` rows, under the empty-mask policy above.

    Returns `pooled_*` (counts summed over the split, then `ratios`), `per_image_fg_iou` and
    `per_image_dice` (means over images with a lesion), `hd95_px` (mean over images
    where both masks are non-empty), and the image counts: `images`, `lesion_images`,
    `lesion_free_images`, `lesion_free_with_prediction` (share of lesion-free images with any
    predicted lesion pixel) and `lesion_images_missed` (share of lesion images with no TP).
    """
    if not scores:
        raise ValueError("no images to summarize")
    totals = {key: sum(row[key] for row in scores) for key in ("tp", "fp", "fn", "tn")}
    lesion = [row for row in scores if row["lesion_pixels"] > 0]
    lesion_free = [row for row in scores if row["lesion_pixels"] == 0]
    return {
        **{f"pooled_{key}": value for key, value in ratios(totals).items()},
        **totals,
        "per_image_fg_iou": _nanmean([row["fg_iou"] for row in lesion]),
        "per_image_dice": _nanmean([row["dice"] for row in lesion]),
        "hd95_px": _nanmean([row["hd95_px"] for row in scores]),
        "hd95_images": sum(not np.isnan(row["hd95_px"]) for row in scores),
        "images": len(scores),
        "lesion_images": len(lesion),
        "lesion_free_images": len(lesion_free),
        "lesion_free_with_prediction": _ratio(
            sum(row["predicted_pixels"] > 0 for row in lesion_free), len(lesion_free)),
        "lesion_images_missed": _ratio(sum(row["tp"] == 0 for row in lesion), len(lesion)),
    }
