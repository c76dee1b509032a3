"""The segmentation metrics, against values worked out by hand: one confusion core (counts and
RATIOS) behind training's pooled clu metrics and evaluation's per-image and split scores."""

import dataclasses
import math

import jax.numpy as jnp
import numpy as np
import pytest

from msunet.losses import per_example_bce
from msunet.metrics import (
    EVAL_METRICS,
    RATIOS,
    TRAIN_METRICS,
    PooledRatio,
    SegmentationMetrics,
    confusion_counts,
    hausdorff95,
    image_scores,
    logit_threshold,
    pixel_counts,
    ratio,
    ratios,
    summarize,
)

# --- the confusion core ------------------------------------------------------------------------


def test_metric_names():
    assert TRAIN_METRICS == ("accuracy", "fg_iou", "dice", "mean_iou_2class")
    assert EVAL_METRICS == (*RATIOS, "mean_iou_2class"), "evaluation reports every ratio"
    assert set(TRAIN_METRICS) <= set(EVAL_METRICS)
    fields = dataclasses.fields(SegmentationMetrics)  # clu's own start with "_"
    assert {field.name for field in fields if not field.name.startswith("_")} == {
        "loss", *TRAIN_METRICS}
    counts = {"tp": 1, "fp": 1, "fn": 1, "tn": 1}
    with pytest.raises(ValueError, match="unknown metric 'iou'"):
        ratio("iou", counts)
    with pytest.raises(ValueError, match="unknown metric 'iou'"):
        PooledRatio.of("iou")  # at definition, not inside a jitted step


def test_logit_threshold():
    assert logit_threshold(0.5) == 0.0
    assert logit_threshold(0.7) == pytest.approx(math.log(0.7 / 0.3))
    assert logit_threshold(0.2) == pytest.approx(-math.log(4.0))
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="strictly between 0 and 1"):
            logit_threshold(bad)


def test_confusion_counts_agree_on_numpy_and_jax_and_weigh_pixels():
    rng = np.random.default_rng(0)
    predicted = rng.uniform(size=(3, 5, 5, 1)) < 0.4
    truth = rng.uniform(size=(3, 5, 5, 1)) < 0.3
    counts = confusion_counts(predicted, truth)
    assert sum(counts.values()) == predicted.size
    on_jax = confusion_counts(jnp.asarray(predicted), jnp.asarray(truth), xp=jnp)
    assert {key: int(value) for key, value in on_jax.items()} == {
        key: int(value) for key, value in counts.items()}
    # Weight 0 leaves an example out (the padding of a last batch).
    weights = np.array([1.0, 0.0, 1.0]).reshape(3, 1, 1, 1)
    kept = {key: float(value) for key, value in confusion_counts(predicted[[0, 2]],
                                                                 truth[[0, 2]]).items()}
    for xp in (np, jnp):
        weighted = confusion_counts(xp.asarray(predicted), xp.asarray(truth),
                                    xp.asarray(weights), xp=xp)
        assert {key: float(value) for key, value in weighted.items()} == kept


def test_training_and_evaluation_compute_the_same_numbers():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, (2, 8, 8, 1)).astype(np.float32)
    labels = (rng.uniform(size=logits.shape) < 0.2).astype(np.float32)
    trained = SegmentationMetrics.single_from_model_output(
        loss=per_example_bce(jnp.asarray(logits), jnp.asarray(labels)),
        logits=jnp.asarray(logits), labels=jnp.asarray(labels), threshold=0.3).compute()
    evaluated = ratios(pixel_counts(logits >= logit_threshold(0.3), labels > 0), TRAIN_METRICS)
    for name in TRAIN_METRICS:
        assert float(trained[name]) == pytest.approx(evaluated[name], rel=1e-5), name
    for name in EVAL_METRICS:
        pooled = PooledRatio.of(name).from_model_output(
            logits=jnp.asarray(logits), labels=jnp.asarray(labels), threshold=0.3)
        assert float(pooled.compute()) == pytest.approx(
            ratios(pixel_counts(logits >= logit_threshold(0.3), labels > 0))[name], rel=1e-5)


# --- training's pooled clu metrics -------------------------------------------------------------

def hand_case():
    truth = np.zeros((1, 4, 4, 1), np.float32)
    truth[0, :2, :2] = 1  # 4 lesion pixels
    predicted = np.zeros_like(truth)
    predicted[0, :2, :3] = 1  # 6 predicted: 4 TP, 2 FP, 0 FN, 10 TN
    logits = np.where(predicted > 0, 5.0, -5.0).astype(np.float32)
    return jnp.asarray(logits), jnp.asarray(truth)


def test_confusion_counts_and_metrics_by_hand():
    logits, labels = hand_case()
    counts = {k: float(v) for k, v in confusion_counts(logits >= logit_threshold(0.5), labels > 0,
                                                       xp=jnp).items()}
    assert counts == {"tp": 4, "fp": 2, "fn": 0, "tn": 10}
    metrics = SegmentationMetrics.single_from_model_output(
        loss=per_example_bce(logits, labels), logits=logits, labels=labels).compute()
    assert float(metrics["accuracy"]) == pytest.approx(14 / 16)
    assert float(metrics["fg_iou"]) == pytest.approx(4 / 6)
    assert float(metrics["dice"]) == pytest.approx(8 / 10)
    assert float(metrics["mean_iou_2class"]) == pytest.approx((4 / 6 + 10 / 12) / 2)


def test_example_mask_excludes_padding_and_merge_pools_counts():
    logits, labels = hand_case()
    padded_logits = jnp.concatenate([logits, jnp.full_like(logits, 5.0)])
    padded_labels = jnp.concatenate([labels, jnp.zeros_like(labels)])
    masked = SegmentationMetrics.single_from_model_output(
        loss=per_example_bce(padded_logits, padded_labels), logits=padded_logits,
        labels=padded_labels, mask=jnp.array([True, False])).compute()
    assert float(masked["fg_iou"]) == pytest.approx(4 / 6)
    single = SegmentationMetrics.single_from_model_output(
        loss=per_example_bce(logits, labels), logits=logits, labels=labels)
    pooled = single.merge(single).compute()
    assert float(pooled["fg_iou"]) == pytest.approx(4 / 6)
    assert float(pooled["loss"]) == pytest.approx(float(single.compute()["loss"]))


def test_threshold_moves_the_decision():
    logits = jnp.full((1, 2, 2, 1), 0.5)  # sigmoid(0.5) ~ 0.62
    labels = jnp.ones((1, 2, 2, 1))
    assert float(confusion_counts(logits >= logit_threshold(0.5), labels > 0, xp=jnp)["tp"]) == 4
    assert float(confusion_counts(logits >= logit_threshold(0.7), labels > 0, xp=jnp)["tp"]) == 0
    for threshold, fg_iou in ((0.5, 1.0), (0.7, 0.0)):
        metrics = SegmentationMetrics.single_from_model_output(
            loss=per_example_bce(logits, labels), logits=logits, labels=labels,
            threshold=threshold).compute()
        assert float(metrics["fg_iou"]) == fg_iou


def test_empty_masks_follow_the_evaluation_rule():
    """No lesion anywhere: fg IoU and Dice are undefined in training as in evaluation."""
    logits, labels = jnp.full((1, 4, 4, 1), -5.0), jnp.zeros((1, 4, 4, 1))
    metrics = SegmentationMetrics.single_from_model_output(
        loss=per_example_bce(logits, labels), logits=logits, labels=labels).compute()
    evaluation = ratios(pixel_counts(np.zeros((4, 4), bool), np.zeros((4, 4), bool)))
    for name in TRAIN_METRICS:
        np.testing.assert_equal(float(metrics[name]), evaluation[name])
    assert np.isnan(float(metrics["fg_iou"])) and float(metrics["mean_iou_2class"]) == 1.0


# --- evaluation: per image and over a split ----------------------------------------------------


def masks(truth_pixels, predicted_pixels, shape=(4, 4)):
    """(predicted, truth) boolean masks with the given (row, col) pixels set."""
    truth, predicted = np.zeros(shape, bool), np.zeros(shape, bool)
    for row, col in truth_pixels:
        truth[row, col] = True
    for row, col in predicted_pixels:
        predicted[row, col] = True
    return predicted, truth


# 4x4 image: lesion = 2x2 block at the top left; prediction hits 2 of it and 1 background pixel.
# TP = 2, FP = 1, FN = 2, TN = 11.
TRUTH = [(0, 0), (0, 1), (1, 0), (1, 1)]
PREDICTED = [(0, 0), (0, 1), (3, 3)]


def test_counts_and_ratios_by_hand():
    predicted, truth = masks(TRUTH, PREDICTED)
    counts = pixel_counts(predicted, truth)
    assert counts == {"tp": 2, "fp": 1, "fn": 2, "tn": 11}
    values = ratios(counts)
    assert values["accuracy"] == pytest.approx(13 / 16)
    assert values["fg_iou"] == pytest.approx(2 / 5)
    assert values["dice"] == pytest.approx(4 / 7)
    assert values["sensitivity"] == pytest.approx(2 / 4)
    assert values["specificity"] == pytest.approx(11 / 12)
    assert values["precision"] == pytest.approx(2 / 3)


def test_two_class_mean_iou_like_keras():
    """Keras MeanIoU(num_classes=2): confusion matrix -> per-class IoU -> mean over classes
    that occur (non-zero denominator)."""
    predicted, truth = masks(TRUTH, PREDICTED)
    # Confusion matrix rows = truth (bg, lesion), cols = prediction (bg, lesion).
    confusion = np.array([[11, 1], [2, 2]])
    class_iou = [confusion[c, c] / (confusion[c, :].sum() + confusion[:, c].sum()
                                     - confusion[c, c]) for c in (0, 1)]
    assert class_iou == pytest.approx([11 / 14, 2 / 5])
    assert ratios(pixel_counts(predicted, truth))["mean_iou_2class"] == pytest.approx(
        (11 / 14 + 2 / 5) / 2)
    # Lesion-free image predicted lesion-free: only the background class occurs -> 1.0.
    empty_predicted, empty_truth = masks([], [])
    assert ratios(pixel_counts(empty_predicted, empty_truth))["mean_iou_2class"] == 1.0
    # Lesion-free image with 2 false-positive pixels: lesion IoU 0/2 counts, bg IoU 14/16.
    fp_predicted, fp_truth = masks([], [(2, 2), (2, 3)])
    assert ratios(pixel_counts(fp_predicted, fp_truth))["mean_iou_2class"] == pytest.approx(
        (0 + 14 / 16) / 2)


def test_empty_masks_give_undefined_not_perfect_scores():
    predicted, truth = masks([], [])
    values = ratios(pixel_counts(predicted, truth))
    assert values["accuracy"] == 1.0 and values["specificity"] == 1.0
    for key in ("fg_iou", "dice", "sensitivity", "precision"):
        assert math.isnan(values[key]), key
    assert math.isnan(hausdorff95(predicted, truth))
    missed, truth = masks(TRUTH, [])
    assert image_scores(missed, truth)["fg_iou"] == 0.0
    assert math.isnan(image_scores(missed, truth)["hd95_px"])


def test_summary_applies_the_empty_mask_policy():
    rows = [
        image_scores(*masks(TRUTH, PREDICTED)),  # lesion, fg IoU 2/5
        image_scores(*masks(TRUTH, [])),  # lesion missed: fg IoU 0, no HD95
        image_scores(*masks([], [(3, 3)])),  # lesion-free with a false positive
        image_scores(*masks([], [])),  # lesion-free, clean
    ]
    summary = summarize(rows)
    assert summary["per_image_fg_iou"] == pytest.approx((2 / 5 + 0) / 2)
    assert summary["per_image_dice"] == pytest.approx((4 / 7 + 0) / 2)
    assert (summary["images"], summary["lesion_images"], summary["lesion_free_images"]) == (4, 2, 2)
    assert summary["lesion_free_with_prediction"] == pytest.approx(1 / 2)
    assert summary["lesion_images_missed"] == pytest.approx(1 / 2)
    # Pooled: TP 2, FP 1 + 1, FN 2 + 4, TN 11 + 12 + 15 + 16.
    assert (summary["tp"], summary["fp"], summary["fn"], summary["tn"]) == (2, 2, 6, 54)
    assert summary["pooled_fg_iou"] == pytest.approx(2 / 10)
    assert summary["pooled_dice"] == pytest.approx(4 / 12)
    assert summary["pooled_accuracy"] == pytest.approx(56 / 64)
    assert summary["pooled_mean_iou_2class"] == pytest.approx((2 / 10 + 54 / 62) / 2)
    assert summary["hd95_images"] == 1


def test_hausdorff95_distances_by_hand():
    predicted, truth = masks([(1, 1)], [(1, 4)], shape=(6, 6))
    assert hausdorff95(predicted, truth) == pytest.approx(3.0)
    # Columns 0.25 mm apart: 3 columns = 0.75 mm; rows 0.5 mm apart.
    assert hausdorff95(predicted, truth, spacing=(0.5, 0.25)) == pytest.approx(0.75)
    predicted, truth = masks([(0, 0)], [(4, 3)], shape=(6, 6))
    assert hausdorff95(predicted, truth) == pytest.approx(5.0)
    assert hausdorff95(truth, truth) == 0.0

    # 5x5 squares two columns apart: boundary distances are 0, 1 or 2 (12 of 32 are 2).
    square = np.zeros((9, 12), bool)
    square[2:7, 2:7] = True
    shifted = np.roll(square, 2, axis=1)
    assert hausdorff95(shifted, square) == pytest.approx(2.0)


def test_hausdorff95_ignores_a_few_stray_pixels():
    truth = np.zeros((40, 40), bool)
    truth[5:25, 5:25] = True  # 76 boundary pixels
    predicted = truth.copy()
    predicted[38, 38] = True  # one stray pixel ~18.4 px away from the lesion
    # Plain Hausdorff would be ~18.4; the stray pixel is 1 of 153 boundary distances.
    assert hausdorff95(predicted, truth) == 0.0
    assert image_scores(predicted, truth)["hd95_px"] == 0.0
    assert "hd95_mm" not in image_scores(predicted, truth)  # no source gives a pixel size


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ"):
        pixel_counts(np.zeros((4, 4), bool), np.zeros((4, 5), bool))
