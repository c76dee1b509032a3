"""Losses, computed from logits for numerical stability."""

from __future__ import annotations

import jax.numpy as jnp
import optax


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
