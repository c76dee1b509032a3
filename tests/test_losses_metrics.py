"""Binary cross-entropy and the pooled segmentation metrics on hand-made examples."""

import jax.numpy as jnp
import numpy as np
import pytest

from msunet.losses import binary_cross_entropy, per_example_bce
from msunet.metrics import SegmentationMetrics, confusion_counts


def test_bce_equals_textbook_formula_on_sigmoid_outputs():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (3, 8, 8, 1)).astype(np.float32)
    labels = (rng.uniform(size=logits.shape) < 0.3).astype(np.float32)
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    textbook = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    np.testing.assert_allclose(binary_cross_entropy(jnp.asarray(logits), jnp.asarray(labels)),
                               textbook.mean(), rtol=1e-5)
    np.testing.assert_allclose(per_example_bce(jnp.asarray(logits), jnp.asarray(labels)),
                               textbook.reshape(3, -1).mean(1), rtol=1e-5)


def test_bce_is_finite_for_saturated_logits():
    logits = jnp.array([[200.0, -200.0]])
    labels = jnp.array([[0.0, 1.0]])
    assert float(binary_cross_entropy(logits, labels)) == pytest.approx(200.0)


def hand_case():
    truth = np.zeros((1, 4, 4, 1), np.float32)
    truth[0, :2, :2] = 1  # 4 lesion pixels
    predicted = np.zeros_like(truth)
    predicted[0, :2, :3] = 1  # 6 predicted: 4 TP, 2 FP, 0 FN, 10 TN
    logits = np.where(predicted > 0, 5.0, -5.0).astype(np.float32)
    return jnp.asarray(logits), jnp.asarray(truth)


def test_confusion_counts_and_metrics_by_hand():
    logits, labels = hand_case()
    counts = {k: float(v) for k, v in confusion_counts(logits, labels).items()}
    assert counts == {"tp": 4, "fp": 2, "fn": 0, "tn": 10}
    metrics = SegmentationMetrics.single_from_model_output(
        loss=per_example_bce(logits, labels), logits=logits, labels=labels).compute()
    assert float(metrics["accuracy"]) == pytest.approx(14 / 16)
    assert float(metrics["iou"]) == pytest.approx(4 / 6)
    assert float(metrics["dice"]) == pytest.approx(8 / 10)
    assert float(metrics["mean_iou_2class"]) == pytest.approx((4 / 6 + 10 / 12) / 2)


def test_example_mask_excludes_padding_and_merge_pools_counts():
    logits, labels = hand_case()
    padded_logits = jnp.concatenate([logits, jnp.full_like(logits, 5.0)])
    padded_labels = jnp.concatenate([labels, jnp.zeros_like(labels)])
    masked = SegmentationMetrics.single_from_model_output(
        loss=per_example_bce(padded_logits, padded_labels), logits=padded_logits,
        labels=padded_labels, mask=jnp.array([True, False])).compute()
    assert float(masked["iou"]) == pytest.approx(4 / 6)
    single = SegmentationMetrics.single_from_model_output(
        loss=per_example_bce(logits, labels), logits=logits, labels=labels)
    pooled = single.merge(single).compute()
    assert float(pooled["iou"]) == pytest.approx(4 / 6)
    assert float(pooled["loss"]) == pytest.approx(float(single.compute()["loss"]))


def test_threshold_moves_the_decision():
    logits = jnp.full((1, 2, 2, 1), 0.5)  # sigmoid(0.5) ~ 0.62
    labels = jnp.ones((1, 2, 2, 1))
    assert float(confusion_counts(logits, labels, threshold=0.5)["tp"]) == 4
    assert float(confusion_counts(logits, labels, threshold=0.7)["tp"]) == 0


def test_empty_masks_follow_the_evaluation_rule():
    """No lesion anywhere: fg IoU and Dice are undefined in training as in evaluation."""
    from msunet.metrics import pixel_counts, ratios

    logits, labels = jnp.full((1, 4, 4, 1), -5.0), jnp.zeros((1, 4, 4, 1))
    metrics = SegmentationMetrics.single_from_model_output(
        loss=per_example_bce(logits, labels), logits=logits, labels=labels).compute()
    evaluation = ratios(pixel_counts(np.zeros((4, 4), bool), np.zeros((4, 4), bool)))
    for train_name, eval_name in (("iou", "fg_iou"), ("dice", "dice"),
                                  ("accuracy", "accuracy"),
                                  ("mean_iou_2class", "mean_iou_2class")):
        np.testing.assert_equal(float(metrics[train_name]), evaluation[eval_name])
    assert np.isnan(float(metrics["iou"])) and float(metrics["mean_iou_2class"]) == 1.0
