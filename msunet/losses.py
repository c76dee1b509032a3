"""Losses, computed from logits, and the registry that `train.loss` names.

Every loss maps (logits, labels) of shape (N, H, W, C) to one value per example, shape (N,):
the train step averages them, evaluation reports them per image. A new loss is a function here
and one entry in LOSSES.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

PerExampleLoss = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]


def per_example_bce(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
    """Binary cross-entropy averaged over each example's pixels, shape (N,).

    -[y log p + (1-y) log(1-p)] with p = sigmoid(logits), evaluated from the logits so it
    neither overflows nor saturates; equal to Keras' `binary_crossentropy` on sigmoid outputs
    away from Keras' 1e-7 probability clipping.
    """
    losses = optax.sigmoid_binary_cross_entropy(logits, labels.astype(logits.dtype))
    return losses.reshape(losses.shape[0], -1).mean(axis=1)


def binary_cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
    """Mean binary cross-entropy over all pixels of a batch (Keras' BCE reduction)."""
    return per_example_bce(logits, labels).mean()


def per_example_soft_dice(logits: jnp.ndarray, labels: jnp.ndarray,
                          smooth: float = 1.0) -> jnp.ndarray:
    """1 - soft Dice of sigmoid(logits) against the labels, per example, shape (N,).

    1 - (2 sum(p y) + s) / (sum(p) + sum(y) + s), with s = `smooth` so that a lesion-free
    image predicted lesion-free costs 0 rather than 0/0.
    """
    probabilities = jax.nn.sigmoid(logits).reshape(logits.shape[0], -1)
    labels = labels.astype(probabilities.dtype).reshape(labels.shape[0], -1)
    overlap = (probabilities * labels).sum(axis=1)
    total = probabilities.sum(axis=1) + labels.sum(axis=1)
    return 1.0 - (2.0 * overlap + smooth) / (total + smooth)


def per_example_bce_dice(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
    """BCE + soft Dice loss per example: Dice counters the lesion/background imbalance."""
    return per_example_bce(logits, labels) + per_example_soft_dice(logits, labels)


# The names `train.loss` may take.
LOSSES: dict[str, PerExampleLoss] = {
    "bce": per_example_bce,  # the paper's (and Keras reference's) loss
    "bce_dice": per_example_bce_dice,
}


def get_loss(name: str) -> PerExampleLoss:
    """The per-example loss registered as `name`."""
    if name not in LOSSES:
        raise ValueError(f"unknown train.loss {name!r}; expected one of {sorted(LOSSES)}")
    return LOSSES[name]
