"""Evaluation metrics on small hand-made masks, against values worked out by hand."""

import math

import numpy as np
import pytest

from msunet.metrics import hausdorff95, image_scores, pixel_counts, ratios, summarize


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
