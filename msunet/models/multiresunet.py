"""MultiResUNet (Ibtehaz & Rahman, 2020) as a pure flax.linen module.

A layer-for-layer port of the authors' Keras model (nibtehaz/MultiResUNet,
tensorflow/MultiResUNet.py): same layer order, no conv biases, BatchNorm(scale=False) inside
`conv2d_bn`, transposed convolutions with bias, and a BatchNorm between the last 1x1 conv and the
sigmoid. The encoder-decoder is `UNetSkeleton` (unet.py); this file adds the blocks. The module
returns logits; apply `jax.nn.sigmoid` for probabilities.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax.numpy as jnp

from msunet.models.layers import KERAS_BN_MOMENTUM, ConvBN, Dtype, batch_norm
from msunet.models.unet import STAGES, UNetSkeleton


def multires_widths(filters: int, alpha: float = 1.67) -> tuple[int, int, int]:
    """The three chained conv widths of a MultiResBlock, with Keras' int() rounding."""
    width = alpha * filters
    return int(width * 0.167), int(width * 0.333), int(width * 0.5)


class MultiResBlock(nn.Module):
    """Three chained 3x3 convs (widths ~W/6, W/3, W/2) concatenated, plus a 1x1 shortcut."""

    filters: int
    alpha: float = 1.67
    dtype: Dtype = jnp.float32
    bn_momentum: float = KERAS_BN_MOMENTUM

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        widths = multires_widths(self.filters, self.alpha)
        conv_bn = functools.partial(ConvBN, dtype=self.dtype, bn_momentum=self.bn_momentum)
        norm = functools.partial(batch_norm, train, dtype=self.dtype, momentum=self.bn_momentum)
        shortcut = conv_bn(sum(widths), 1, activation=None)(x, train=train)
        conv3 = conv_bn(widths[0], 3)(x, train=train)
        conv5 = conv_bn(widths[1], 3)(conv3, train=train)
        conv7 = conv_bn(widths[2], 3)(conv5, train=train)
        out = norm()(jnp.concatenate([conv3, conv5, conv7], axis=-1))
        return norm()(nn.relu(shortcut + out))


class ResPath(nn.Module):
    """`length` residual units (3x3 conv + 1x1 shortcut) on an encoder skip connection."""

    filters: int
    length: int
    dtype: Dtype = jnp.float32
    bn_momentum: float = KERAS_BN_MOMENTUM

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        conv_bn = functools.partial(ConvBN, dtype=self.dtype, bn_momentum=self.bn_momentum)
        for _ in range(self.length):
            shortcut = conv_bn(self.filters, 1, activation=None)(x, train=train)
            out = conv_bn(self.filters, 3)(x, train=train)
            x = batch_norm(train, dtype=self.dtype, momentum=self.bn_momentum)(
                nn.relu(shortcut + out))
        return x


class MultiResUNet(UNetSkeleton):
    """MultiResUNet: MultiResBlocks in every stage and ResPaths on the skips (7,262,504
    parameters at base_filters=32, as the Keras reference).

    Attributes: those of `UNetSkeleton` (base_filters is the width U of the first
    MultiResBlock), and alpha, the MultiResBlock width multiplier (1.67 keeps the count just
    below U-Net's).
    """

    alpha: float = 1.67

    def block(self, filters: int) -> nn.Module:
        return MultiResBlock(filters, alpha=self.alpha, dtype=self.dtype,
                             bn_momentum=self.bn_momentum)

    def skip(self, filters: int, depth: int) -> nn.Module:
        return ResPath(filters, STAGES - depth, dtype=self.dtype, bn_momentum=self.bn_momentum)
