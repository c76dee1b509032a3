"""Segmentation metrics, with their definitions.

Pixels are counted over a whole batch (or split): TP = predicted lesion and true lesion, FP =
predicted lesion on background, FN = missed lesion, TN = background called background.

- pixel accuracy = (TP + TN) / (TP + TN + FP + FN): the paper's "accuracy"; dominated by
  background (lesions cover ~1-3 % of a mammogram), so an all-background model scores ~98 %.
- foreground IoU = TP / (TP + FP + FN): overlap of the lesion masks, the honest headline number.
- Dice = 2 TP / (2 TP + FP + FN).
- 2-class mean IoU = (lesion IoU + background IoU) / 2 with background IoU = TN / (TN + FP + FN),
  as Keras `MeanIoU(num_classes=2)` computes it; the paper's "IoU" follows this convention.

During training these are *pooled*: counts summed over every pixel of the split, then divided.
"""

# No `from __future__ import annotations`: clu reads the Collection annotations as classes.

import flax.struct
import jax.numpy as jnp
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
    """numerator / denominator, and 1.0 where both are zero (nothing to find, nothing found)."""
    return jnp.where(denominator > 0, numerator / jnp.maximum(denominator, 1e-12), 1.0)


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
        lesion = _safe_ratio(self.tp, self.tp + self.fp + self.fn)
        background = _safe_ratio(self.tn, self.tn + self.fp + self.fn)
        return (lesion + background) / 2


@flax.struct.dataclass
class SegmentationMetrics(clu_metrics.Collection):
    """What training and validation report: loss, pixel accuracy, fg IoU, Dice, 2-class mIoU."""

    loss: clu_metrics.Average.from_output("loss")
    accuracy: PixelAccuracy
    iou: ForegroundIoU
    dice: Dice
    mean_iou_2class: MeanIoU2
