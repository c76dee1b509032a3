"""MultiResUNet (Ibtehaz & Rahman, 2020) as a pure flax.linen module.

A layer-for-layer port of the authors' Keras model (nibtehaz/MultiResUNet,
tensorflow/MultiResUNet.py): same layer order, no conv biases, BatchNorm(scale=False) inside
`conv2d_bn`, transposed convolutions with bias, and a BatchNorm between the last 1x1 conv and the
sigmoid. The module returns logits; apply `jax.nn.sigmoid` for probabilities.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax.numpy as jnp

from msunet.models.layers import (
    KERAS_BN_MOMENTUM,
    ConvBN,
    Dtype,
    batch_norm,
    check_input,
    max_pool_2x2,
    upsample,
)


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


class MultiResUNet(nn.Module):
    """MultiResUNet for binary segmentation; NHWC in, (N, H, W, out_channels) logits out.

    Attributes:
      base_filters: width U of the first MultiResBlock (32 in the paper); doubles per stage.
      alpha: MultiResBlock width multiplier (1.67 keeps the count just below U-Net's).
      out_channels: number of sigmoid outputs (1 for lesion vs background).
      dtype: compute dtype (e.g. jnp.bfloat16); parameters and BN statistics stay float32.
      in_channels: when set, inputs with another channel count raise a ValueError.
      bn_momentum: BatchNorm running-average momentum; Keras' 0.99 suits the paper's ~45k steps,
        while runs of a few hundred steps need ~0.9 for usable inference-mode statistics.
      head_bias_init: initial offset of the output logits (the head BatchNorm's beta). 0 is
        Keras'; about log(p / (1 - p)) for a lesion share p starts training from the prior
        instead of p = 0.5, which saves thousands of steps on small lesions.
    """

    base_filters: int = 32
    alpha: float = 1.67
    out_channels: int = 1
    dtype: Dtype = jnp.float32
    in_channels: int | None = None
    head_bias_init: float = 0.0
    bn_momentum: float = KERAS_BN_MOMENTUM

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        check_input(x, multiple=16, in_channels=self.in_channels)
        x = x.astype(self.dtype)
        filters = [self.base_filters * 2**i for i in range(5)]
        block = functools.partial(MultiResBlock, alpha=self.alpha, dtype=self.dtype,
                                  bn_momentum=self.bn_momentum)
        skips = []
        for depth, f in enumerate(filters[:4]):
            x = block(f)(x, train=train)
            skips.append(ResPath(f, 4 - depth, dtype=self.dtype,
                                 bn_momentum=self.bn_momentum)(x, train=train))
            x = max_pool_2x2(x)
        x = block(filters[4])(x, train=train)
        for up, (f, skip) in enumerate(zip(reversed(filters[:4]), reversed(skips), strict=True)):
            upsampled = upsample(f, self.dtype, name=f"ConvTranspose_{up}")(x)
            x = jnp.concatenate([upsampled, skip], axis=-1)
            x = block(f)(x, train=train)
        logits = ConvBN(self.out_channels, 1, activation=None, bn_bias_init=self.head_bias_init,
                        dtype=self.dtype, bn_momentum=self.bn_momentum)(x, train=train)
        return logits.astype(jnp.float32)
