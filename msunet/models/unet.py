"""The classic U-Net baseline (Ronneberger et al., 2015) as used in the MultiResUNet paper.

Two 3x3 conv (no bias) + BatchNorm + ReLU per stage, 32-64-128-256-512 filters, 2x2 max-pooling,
transposed-conv upsampling with bias, and a 1x1 conv + BatchNorm head returning logits — the
same conventions as the MultiResUNet port so the two differ only in their blocks.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax.numpy as jnp

from msunet.models.layers import (
    KERAS_BN_MOMENTUM,
    ConvBN,
    Dtype,
    check_input,
    max_pool_2x2,
    upsample,
)


class DoubleConv(nn.Module):
    """Two 3x3 conv + BatchNorm + ReLU layers."""

    filters: int
    dtype: Dtype = jnp.float32
    bn_momentum: float = KERAS_BN_MOMENTUM

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        conv_bn = functools.partial(ConvBN, self.filters, 3, bn_scale=True, dtype=self.dtype,
                                    bn_momentum=self.bn_momentum)
        return conv_bn()(conv_bn()(x, train=train), train=train)


class UNet(nn.Module):
    """U-Net for binary segmentation; NHWC in, (N, H, W, out_channels) logits out.

    Attributes as MultiResUNet's: base_filters, out_channels, dtype, in_channels,
    head_bias_init, bn_momentum.
    """

    base_filters: int = 32
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
        skips = []
        for f in filters[:4]:
            x = DoubleConv(f, dtype=self.dtype, bn_momentum=self.bn_momentum)(x, train=train)
            skips.append(x)
            x = max_pool_2x2(x)
        x = DoubleConv(filters[4], dtype=self.dtype, bn_momentum=self.bn_momentum)(x, train=train)
        for up, (f, skip) in enumerate(zip(reversed(filters[:4]), reversed(skips), strict=True)):
            upsampled = upsample(f, self.dtype, name=f"ConvTranspose_{up}")(x)
            x = jnp.concatenate([upsampled, skip], axis=-1)
            x = DoubleConv(f, dtype=self.dtype, bn_momentum=self.bn_momentum)(x, train=train)
        logits = ConvBN(self.out_channels, 1, activation=None, bn_bias_init=self.head_bias_init,
                        dtype=self.dtype, bn_momentum=self.bn_momentum)(x, train=train)
        return logits.astype(jnp.float32)
