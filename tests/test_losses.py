"""The losses on hand-made examples, and the registry that `train.loss` names."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msunet.losses import (
    LOSSES,
    binary_cross_entropy,
    get_loss,
    per_example_bce,
    per_example_bce_dice,
    per_example_soft_dice,
)


def random_case(seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (3, 8, 8, 1)).astype(np.float32)
    labels = (rng.uniform(size=logits.shape) < 0.3).astype(np.float32)
    return logits, labels


# --- binary cross-entropy ----------------------------------------------------------------------

def test_bce_equals_textbook_formula_on_sigmoid_outputs():
    logits, labels = random_case()
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


# --- soft Dice and BCE + Dice ------------------------------------------------------------------

def lesion_square():
    """One 4x4 image whose lesion is the 2x2 block at the top left (4 of 16 pixels)."""
    labels = np.zeros((1, 4, 4, 1), np.float32)
    labels[0, :2, :2] = 1
    return jnp.asarray(labels)


def test_soft_dice_by_hand():
    labels = lesion_square()
    # p = 0.5 everywhere: overlap 4 * 0.5 = 2, sum(p) + sum(y) = 8 + 4.
    undecided = jnp.zeros_like(labels)
    np.testing.assert_allclose(per_example_soft_dice(undecided, labels), [1 - (4 + 1) / (12 + 1)],
                               rtol=1e-6)
    np.testing.assert_allclose(per_example_soft_dice(undecided, labels, smooth=0.0),
                               [1 - 4 / 12], rtol=1e-6)
    perfect = jnp.where(labels > 0, 30.0, -30.0)
    np.testing.assert_allclose(per_example_soft_dice(perfect, labels), [0.0], atol=1e-6)


def test_soft_dice_of_a_lesion_free_image_predicted_lesion_free_is_zero_not_nan():
    labels = jnp.zeros((2, 4, 4, 1))
    clean = jnp.full_like(labels, -30.0)
    loss = per_example_soft_dice(clean, labels)
    assert loss.shape == (2,) and bool(jnp.all(jnp.isfinite(loss)))
    np.testing.assert_allclose(loss, [0.0, 0.0], atol=1e-6)
    gradient = jax.grad(lambda logits: per_example_soft_dice(logits, labels).sum())(clean)
    assert bool(jnp.all(jnp.isfinite(gradient)))
    # Every pixel called lesion on a lesion-free image: 1 - (0 + 1) / (16 + 0 + 1).
    np.testing.assert_allclose(per_example_soft_dice(-clean, labels), [16 / 17] * 2, rtol=1e-6)


def test_bce_dice_is_bce_plus_soft_dice():
    logits, labels = map(jnp.asarray, random_case(1))
    np.testing.assert_allclose(per_example_bce_dice(logits, labels),
                               per_example_bce(logits, labels)
                               + per_example_soft_dice(logits, labels), rtol=1e-6)
    assert float(per_example_bce_dice(logits, labels).min()) > 0


# --- the registry ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_gives_one_finite_value_per_example(name):
    logits, labels = map(jnp.asarray, random_case(2))
    losses = get_loss(name)(logits, labels)
    assert losses.shape == (3,) and bool(jnp.all(jnp.isfinite(losses)))


def test_get_loss_names_the_choices():
    assert sorted(LOSSES) == ["bce", "bce_dice"]
    assert get_loss("bce") is per_example_bce and get_loss("bce_dice") is per_example_bce_dice
    with pytest.raises(ValueError, match=r"unknown train.loss 'focal'; expected one of "
                                         r"\['bce', 'bce_dice'\]"):
        get_loss("focal")
