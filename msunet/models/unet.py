"""The U-Net skeleton both networks share, and the classic U-Net baseline built on it.

`UNetSkeleton` is the encoder-decoder of Ronneberger et al. (2015) as the MultiResUNet paper uses
it: four stages of (block, 2x2 max-pooling) whose outputs, passed through a skip module, are
concatenated with the transposed-conv upsampling of the stage below; widths base_filters x 1, 2,
4, 8, 16; a 1x1 conv + BatchNorm head returning logits. A network is the skeleton plus two
choices, made by overriding `block` and `skip`:

- `UNet`: two 3x3 conv (no bias) + BatchNorm + ReLU per block, plain skips.
- `MultiResUNet` (multiresunet.py): MultiResBlocks, and ResPaths on the skips.
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

STAGES = 4  # 2x2 poolings, so inputs must be multiples of 2**STAGES


class UNetSkeleton(nn.Module):
    """Encoder-decoder for binary segmentation; NHWC in, (N, H, W, out_channels) logits out.

    Subclasses say which `block` runs at each stage and which `skip` module carries the encoder
    output across; everything else (widths, pooling, upsampling, head, dtype) is here, once.

    Attributes:
      base_filters: width of the first stage (32 in the paper); doubles per stage.
      out_channels: number of sigmoid outputs (1 for lesion vs background).
      dtype: compute dtype (e.g. jnp.bfloat16); parameters and BN statistics stay float32.
      in_channels: when set, inputs with another channel count raise a ValueError.
      head_bias_init: initial offset of the output logits (the head BatchNorm's beta). 0 is
        Keras'; about log(p / (1 - p)) for a lesion share p starts training from the prior
        instead of p = 0.5, which saves thousands of steps on small lesions.
      bn_momentum: BatchNorm running-average momentum; Keras' 0.99 suits the paper's ~45k steps,
        while runs of a few hundred steps need ~0.9 for usable inference-mode statistics.
    """

    base_filters: int = 32
    out_channels: int = 1
    dtype: Dtype = jnp.float32
    in_channels: int | None = None
    head_bias_init: float = 0.0
    bn_momentum: float = KERAS_BN_MOMENTUM

    def block(self, filters: int) -> nn.Module:
        """The module of one stage, `filters` wide (encoder, bottleneck and decoder alike)."""
        raise NotImplementedError(f"{type(self).__name__} must define block()")

    def skip(self, filters: int, depth: int) -> nn.Module | None:
        """The module on the skip connection of stage `depth` (0 = full resolution); None =
        the encoder output goes across as it is."""
        return None

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        check_input(x, multiple=2**STAGES, in_channels=self.in_channels)
        x = x.astype(self.dtype)
        filters = [self.base_filters * 2**i for i in range(STAGES + 1)]
        skips = []
        for depth, f in enumerate(filters[:STAGES]):
            x = self.block(f)(x, train=train)
            skip = self.skip(f, depth)
            skips.append(x if skip is None else skip(x, train=train))
            x = max_pool_2x2(x)
        x = self.block(filters[STAGES])(x, train=train)
        for up, (f, skip) in enumerate(zip(reversed(filters[:STAGES]), reversed(skips),
                                           strict=True)):
            upsampled = upsample(f, self.dtype, name=f"ConvTranspose_{up}")(x)
            x = jnp.concatenate([upsampled, skip], axis=-1)
            x = self.block(f)(x, train=train)
        logits = ConvBN(self.out_channels, 1, activation=None, bn_bias_init=self.head_bias_init,
                        dtype=self.dtype, bn_momentum=self.bn_momentum)(x, train=train)
        return logits.astype(jnp.float32)


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


class UNet(UNetSkeleton):
    """The classic U-Net baseline of the paper: DoubleConv blocks, plain skips (7,768,355
    parameters at base_filters=32, as the Keras reference)."""

    def block(self, filters: int) -> nn.Module:
        return DoubleConv(filters, dtype=self.dtype, bn_momentum=self.bn_momentum)
