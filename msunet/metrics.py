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

During training these are *pooled*: counts summed over every pixel of the split, then divided.
Evaluation (numpy, below the training metrics) adds per-image scores, sensitivity, specificity,
precision, the 95th-percentile Hausdorff distance and an explicit policy for lesion-free images.
"""

# No `from __future__ import annotations`: clu reads the Collection annotations as classes.

import cv2
import flax.struct
import jax.numpy as jnp
import numpy as np
import scipy.ndimage
from clu import metrics as clu_metrics


def confusion_counts(logits: jnp.ndarray, labels: jnp.ndarray, threshold: float = 0.5,
                     mask: jnp.ndarray | None = None) -> dict[str, jnp.ndarray]:
    """TP/FP/FN/TN pixel counts of sigmoid(logits) >= threshold against binary labels.

    `mask` (shape (N,), clu's example mask) leaves out padded examples of a partial batch.
    """
    logit_threshold = jnp.log(threshold) - jnp.log1p(-threshold)
    predicted = logits >= logit_threshold
    truth = labels > 0
    weights = jnp.ones(logits.shape[0]) if mask is None else mask
    pixel_weights = jnp.broadcast_to(
        weights.reshape((-1,) + (1,) * (logits.ndim - 1)), logits.shape).astype(jnp.float32)

    def count(selection: jnp.ndarray) -> jnp.ndarray:
        return jnp.sum(selection * pixel_weights)

    return {
        "tp": count(predicted & truth),
        "fp": count(predicted & ~truth),
        "fn": count(~predicted & truth),
        "tn": count(~predicted & ~truth),
    }


def _safe_ratio(numerator: jnp.ndarray, denominator: jnp.ndarray) -> jnp.ndarray:
    """numerator / denominator, NaN where the denominator is 0 (the empty-mask rule above)."""
    return jnp.where(denominator > 0, numerator / jnp.maximum(denominator, 1e-12), jnp.nan)


@flax.struct.dataclass
class ConfusionCounts(clu_metrics.Metric):
    """Pooled pixel confusion counts; subclasses turn them into one number.

    Ground truth comes in as `labels=`: clu reserves `mask=` for the example mask, which here
    leaves out padded examples of a last partial batch.
    """

    tp: jnp.ndarray
    fp: jnp.ndarray
    fn: jnp.ndarray
    tn: jnp.ndarray

    @classmethod
    def from_model_output(cls, *, logits: jnp.ndarray, labels: jnp.ndarray,
                          mask: jnp.ndarray | None = None, threshold: float = 0.5,
                          **_) -> "ConfusionCounts":
        return cls(**confusion_counts(logits, labels, threshold, mask))

    def merge(self, other: "ConfusionCounts") -> "ConfusionCounts":
        return type(self)(tp=self.tp + other.tp, fp=self.fp + other.fp,
                          fn=self.fn + other.fn, tn=self.tn + other.tn)

    def compute(self) -> jnp.ndarray:
        raise NotImplementedError("use a subclass: PixelAccuracy, ForegroundIoU, Dice, MeanIoU2")


@flax.struct.dataclass
class PixelAccuracy(ConfusionCounts):
    """(TP + TN) / all pixels."""

    def compute(self) -> jnp.ndarray:
        return _safe_ratio(self.tp + self.tn, self.tp + self.tn + self.fp + self.fn)


@flax.struct.dataclass
class ForegroundIoU(ConfusionCounts):
    """TP / (TP + FP + FN), pooled."""

    def compute(self) -> jnp.ndarray:
        return _safe_ratio(self.tp, self.tp + self.fp + self.fn)


@flax.struct.dataclass
class Dice(ConfusionCounts):
    """2 TP / (2 TP + FP + FN), pooled."""

    def compute(self) -> jnp.ndarray:
        return _safe_ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)


@flax.struct.dataclass
class MeanIoU2(ConfusionCounts):
    """Mean of lesion IoU and background IoU (Keras MeanIoU(num_classes=2)), pooled."""

    def compute(self) -> jnp.ndarray:
        ious = jnp.stack([_safe_ratio(self.tp, self.tp + self.fp + self.fn),
                          _safe_ratio(self.tn, self.tn + self.fp + self.fn)])
        return jnp.nanmean(ious)  # the classes present; NaN only for an empty split


@flax.struct.dataclass
class SegmentationMetrics(clu_metrics.Collection):
    """What training and validation report: loss, pixel accuracy, fg IoU, Dice, 2-class mIoU."""

    loss: clu_metrics.Average.from_output("loss")
    accuracy: PixelAccuracy
    iou: ForegroundIoU
    dice: Dice
    mean_iou_2class: MeanIoU2


# --- Evaluation metrics (numpy, per image and over a split) -------------------------------------
#
# Evaluation scores every image on its own and pools the counts over the split:
# - per-image foreground IoU and Dice: computed for each image *with* a lesion, then averaged
#   (an image whose lesion is missed entirely scores 0). Lesion-free images are excluded, since
#   their fg IoU is 0/0; they are reported separately as the share of lesion-free images with
#   any predicted lesion pixel ("false-positive image rate").
# - pooled: TP/FP/FN/TN summed over every pixel of the split, then divided, for fg IoU, Dice,
#   pixel accuracy, 2-class mean IoU, sensitivity, specificity and precision.
# - 95th-percentile Hausdorff distance: per image where both masks have lesion pixels (else
#   undefined and left out), then averaged.
# Undefined ratios (0/0) are NaN and left out of means (the empty-mask rule at the top).

EVAL_RATIOS = ("accuracy", "fg_iou", "dice", "mean_iou_2class", "sensitivity", "specificity",
               "precision")


def pixel_counts(predicted: np.ndarray, truth: np.ndarray) -> dict[str, int]:
    """TP, FP, FN and TN pixel counts of two boolean masks of the same shape."""
    if predicted.shape != truth.shape:
        raise ValueError(f"predicted mask {predicted.shape} and truth {truth.shape} differ")
    predicted, truth = predicted.astype(bool), truth.astype(bool)
    return {"tp": int(np.count_nonzero(predicted & truth)),
            "fp": int(np.count_nonzero(predicted & ~truth)),
            "fn": int(np.count_nonzero(~predicted & truth)),
            "tn": int(np.count_nonzero(~predicted & ~truth))}


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


def ratios(counts: dict[str, int]) -> dict[str, float]:
    """The evaluation ratios of TP/FP/FN/TN counts (NaN where a denominator is 0).

    - accuracy = (TP + TN) / (TP + FP + FN + TN)
    - fg_iou = TP / (TP + FP + FN); dice = 2 TP / (2 TP + FP + FN)
    - mean_iou_2class: mean of lesion IoU TP / (TP + FP + FN) and background IoU
      TN / (TN + FP + FN) over the classes whose denominator is non-zero, exactly as Keras
      `MeanIoU(num_classes=2)` does (on a lesion-free image predicted lesion-free it is the
      background IoU alone, 1.0)
    - sensitivity (recall) = TP / (TP + FN); specificity = TN / (TN + FP);
      precision = TP / (TP + FP)
    """
    tp, fp, fn, tn = (counts[key] for key in ("tp", "fp", "fn", "tn"))
    class_ious = [_ratio(tp, tp + fp + fn), _ratio(tn, tn + fp + fn)]
    valid = [iou for iou in class_ious if not np.isnan(iou)]
    return {
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn),
        "fg_iou": class_ious[0],
        "dice": _ratio(2 * tp, 2 * tp + fp + fn),
        "mean_iou_2class": float(np.mean(valid)) if valid else float("nan"),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "precision": _ratio(tp, tp + fp),
    }


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
