"""The Keras reference models: MultiResUNet and U-Net in Keras 3, layer for layer.

MultiResUNet follows the authors' tensorflow/MultiResUNet.py (nibtehaz/MultiResUNet): `conv2d_bn`
is Conv2D(use_bias=False) -> BatchNormalization(axis=3, scale=False) -> activation, the blocks are
built in the same call order, and the head is a 1x1 `conv2d_bn` with a sigmoid. The U-Net baseline
uses the Flax `UNet`'s conventions (BatchNorm with scale inside its double convs). Widths are
parameters so tests can build narrow models; the defaults are the paper's. `bn_momentum` and
`head_bias_init` (the head BatchNorm's initial offset) default to Keras' 0.99 and 0; the accuracy
benchmark sets them to what msunet's short-run configs use, in both frameworks alike.

The MultiResBlock widths are written here as the authors wrote them, not imported from msunet,
so that a width bug in msunet shows up as a parameter-count or equivalence failure.

Needs the bench extra (`pip install -e '.[bench]'`); msunet itself never imports this file.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import initializers, layers

KERAS_BN_MOMENTUM = 0.99


def conv2d_bn(x: Any, filters: int, size: int, activation: str | None = "relu",
              scale: bool = False, momentum: float = KERAS_BN_MOMENTUM,
              bias_init: float = 0.0) -> Any:
    """Conv2D (same padding, no bias) -> BatchNormalization(scale=False) -> activation."""
    x = layers.Conv2D(filters, (size, size), padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(axis=3, scale=scale, momentum=momentum,
                                  beta_initializer=initializers.Constant(bias_init))(x)
    if activation is None:
        return x
    return layers.Activation(activation)(x)


def multires_block(units: int, inputs: Any, alpha: float = 1.67,
                   momentum: float = KERAS_BN_MOMENTUM) -> Any:
    """Three chained 3x3 conv2d_bn concatenated, plus a 1x1 shortcut, add, ReLU, BatchNorm."""
    width = alpha * units
    widths = int(width * 0.167), int(width * 0.333), int(width * 0.5)  # the authors' rounding
    shortcut = conv2d_bn(inputs, sum(widths), 1, activation=None, momentum=momentum)
    conv3x3 = conv2d_bn(inputs, widths[0], 3, momentum=momentum)
    conv5x5 = conv2d_bn(conv3x3, widths[1], 3, momentum=momentum)
    conv7x7 = conv2d_bn(conv5x5, widths[2], 3, momentum=momentum)
    out = layers.concatenate([conv3x3, conv5x5, conv7x7], axis=3)
    out = layers.BatchNormalization(axis=3, momentum=momentum)(out)
    out = layers.add([shortcut, out])
    out = layers.Activation("relu")(out)
    return layers.BatchNormalization(axis=3, momentum=momentum)(out)


def res_path(filters: int, length: int, inputs: Any,
             momentum: float = KERAS_BN_MOMENTUM) -> Any:
    """`length` units of (1x1 shortcut, 3x3 conv) -> add -> ReLU -> BatchNorm."""
    out = inputs
    for _ in range(length):
        shortcut = conv2d_bn(out, filters, 1, activation=None, momentum=momentum)
        conv = conv2d_bn(out, filters, 3, momentum=momentum)
        out = layers.add([shortcut, conv])
        out = layers.Activation("relu")(out)
        out = layers.BatchNormalization(axis=3, momentum=momentum)(out)
    return out


def _upsample(x: Any, filters: int) -> Any:
    return layers.Conv2DTranspose(filters, (2, 2), strides=(2, 2), padding="same")(x)


def multiresunet(height: int = 256, width: int = 256, in_channels: int = 1,
                 base_filters: int = 32, alpha: float = 1.67, out_channels: int = 1,
                 bn_momentum: float = KERAS_BN_MOMENTUM,
                 head_bias_init: float = 0.0) -> keras.Model:
    """The authors' MultiResUnet(height, width, n_channels), with sigmoid probabilities out."""
    inputs = keras.Input((height, width, in_channels))
    filters = [base_filters * 2**i for i in range(5)]
    x, skips = inputs, []
    for depth, f in enumerate(filters[:4]):
        block = multires_block(f, x, alpha, bn_momentum)
        x = layers.MaxPooling2D(pool_size=(2, 2))(block)
        skips.append(res_path(f, 4 - depth, block, bn_momentum))
    x = multires_block(filters[4], x, alpha, bn_momentum)
    for f, skip in zip(reversed(filters[:4]), reversed(skips), strict=True):
        x = layers.concatenate([_upsample(x, f), skip], axis=3)
        x = multires_block(f, x, alpha, bn_momentum)
    outputs = conv2d_bn(x, out_channels, 1, activation="sigmoid", momentum=bn_momentum,
                        bias_init=head_bias_init)
    return keras.Model(inputs=[inputs], outputs=[outputs], name="multiresunet")


def unet(height: int = 256, width: int = 256, in_channels: int = 1, base_filters: int = 32,
         out_channels: int = 1, bn_momentum: float = KERAS_BN_MOMENTUM,
         head_bias_init: float = 0.0) -> keras.Model:
    """The paper's U-Net baseline: 2x(3x3 conv + BN + ReLU) per stage, transposed-conv up."""
    inputs = keras.Input((height, width, in_channels))
    filters = [base_filters * 2**i for i in range(5)]

    def double_conv(x: Any, f: int) -> Any:
        x = conv2d_bn(x, f, 3, scale=True, momentum=bn_momentum)
        return conv2d_bn(x, f, 3, scale=True, momentum=bn_momentum)

    x, skips = inputs, []
    for f in filters[:4]:
        x = double_conv(x, f)
        skips.append(x)
        x = layers.MaxPooling2D(pool_size=(2, 2))(x)
    x = double_conv(x, filters[4])
    for f, skip in zip(reversed(filters[:4]), reversed(skips), strict=True):
        x = layers.concatenate([_upsample(x, f), skip], axis=3)
        x = double_conv(x, f)
    outputs = conv2d_bn(x, out_channels, 1, activation="sigmoid", momentum=bn_momentum,
                        bias_init=head_bias_init)
    return keras.Model(inputs=[inputs], outputs=[outputs], name="unet")


MODELS = {"multiresunet": multiresunet, "unet": unet}


def build(name: str, image_size: int, in_channels: int = 1, base_filters: int = 32,
          alpha: float = 1.67, bn_momentum: float = KERAS_BN_MOMENTUM,
          head_bias_init: float = 0.0) -> keras.Model:
    """The Keras model named as in msunet's `model.name`, for square `image_size` inputs."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    kwargs: dict[str, Any] = dict(height=image_size, width=image_size, in_channels=in_channels,
                                  base_filters=base_filters, bn_momentum=bn_momentum,
                                  head_bias_init=head_bias_init)
    if name == "multiresunet":
        kwargs["alpha"] = alpha
    return MODELS[name](**kwargs)
