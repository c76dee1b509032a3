"""MultiResUNet (Ibtehaz & Rahman, 2020) as a pure flax.linen module.

A layer-for-layer port of the authors' Keras model (nibtehaz/MultiResUNet,
tensorflow/MultiResUNet.py): same layer order, no conv biases, BatchNorm(scale=False) inside
`conv2d_bn`, transposed convolutions with bias, and a BatchNorm between the last 1x1 conv and the
sigmoid. The module returns logits; apply `jax.nn.sigmoid` for probabilities.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from msunet.models.layers import ConvBN, Dtype, batch_norm, check_input, max_pool_2x2, upsample


def multires_widths(filters: int, alpha: float = 1.67) -> tuple[int, int, int]:
    """The three chained conv widths of a MultiResBlock, with Keras' int() rounding."""
    width = alpha * filters
    return int(width * 0.167), int(width * 0.333), int(width * 0.5)


class MultiResBlock(nn.Module):
    """Three chained 3x3 convs (widths ~W/6, W/3, W/2) concatenated, plus a 1x1 shortcut."""

    filters: int
    alpha: float = 1.67
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        widths = multires_widths(self.filters, self.alpha)
        shortcut = ConvBN(sum(widths), 1, activation=None, dtype=self.dtype)(x, train=train)
        conv3 = ConvBN(widths[0], 3, dtype=self.dtype)(x, train=train)
        conv5 = ConvBN(widths[1], 3, dtype=self.dtype)(conv3, train=train)
        conv7 = ConvBN(widths[2], 3, dtype=self.dtype)(conv5, train=train)
        out = jnp.concatenate([conv3, conv5, conv7], axis=-1)
        out = batch_norm(train, dtype=self.dtype)(out)
        out = nn.relu(shortcut + out)
        return batch_norm(train, dtype=self.dtype)(out)


class ResPath(nn.Module):
    """`length` residual units (3x3 conv + 1x1 shortcut) on an encoder skip connection."""

    filters: int
    length: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        for _ in range(self.length):
            shortcut = ConvBN(self.filters, 1, activation=None, dtype=self.dtype)(x, train=train)
            out = ConvBN(self.filters, 3, dtype=self.dtype)(x, train=train)
            x = batch_norm(train, dtype=self.dtype)(nn.relu(shortcut + out))
        return x


class MultiResUNet(nn.Module):
    """MultiResUNet for binary segmentation; NHWC in, (N, H, W, out_channels) logits out.

    Attributes:
      base_filters: width U of the first MultiResBlock (32 in the paper); doubles per stage.
      alpha: MultiResBlock width multiplier (1.67 keeps the count just below U-Net's).
      out_channels: number of sigmoid outputs (1 for lesion vs background).
      dtype: compute dtype (e.g. jnp.bfloat16); parameters and BN statistics stay float32.
      in_channels: when set, inputs with another channel count raise a ValueError.
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

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        check_input(x, multiple=16, in_channels=self.in_channels)
        x = x.astype(self.dtype)
        filters = [self.base_filters * 2**i for i in range(5)]
        skips = []
        for depth, f in enumerate(filters[:4]):
            x = MultiResBlock(f, self.alpha, dtype=self.dtype)(x, train=train)
            skips.append(ResPath(f, 4 - depth, dtype=self.dtype)(x, train=train))
            x = max_pool_2x2(x)
        x = MultiResBlock(filters[4], self.alpha, dtype=self.dtype)(x, train=train)
        for f, skip in zip(reversed(filters[:4]), reversed(skips), strict=True):
            x = jnp.concatenate([upsample(f, self.dtype)(x), skip], axis=-1)
            x = MultiResBlock(f, self.alpha, dtype=self.dtype)(x, train=train)
        logits = ConvBN(self.out_channels, 1, activation=None, bn_bias_init=self.head_bias_init,
                        dtype=self.dtype)(x, train=train)
        return logits.astype(jnp.float32)
