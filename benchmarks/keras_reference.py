"""The Keras reference models: MultiResUNet and U-Net in Keras 3, layer for layer.

MultiResUNet follows the authors' tensorflow/MultiResUNet.py (nibtehaz/MultiResUNet): `conv2d_bn`
is Conv2D(use_bias=False) -> BatchNormalization(axis=3, scale=False) -> activation, the blocks are
built in the same call order, and the head is a 1x1 `conv2d_bn` with a sigmoid. The U-Net baseline
uses the Flax `UNet`'s conventions (BatchNorm with scale inside its double convs). Widths are
parameters so tests can build narrow models; the defaults are the paper's.

Needs the bench extra (`pip install -e '.[bench]'`); msunet itself never imports this file.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from msunet.models.multiresunet import multires_widths


def conv2d_bn(x: Any, filters: int, size: int, activation: str | None = "relu",
              scale: bool = False) -> Any:
    """Conv2D (same padding, no bias) -> BatchNormalization(scale=False) -> activation."""
    x = layers.Conv2D(filters, (size, size), padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(axis=3, scale=scale)(x)
    if activation is None:
        return x
    return layers.Activation(activation)(x)


def multires_block(units: int, inputs: Any, alpha: float = 1.67) -> Any:
    """Three chained 3x3 conv2d_bn concatenated, plus a 1x1 shortcut, add, ReLU, BatchNorm."""
    widths = multires_widths(units, alpha)
    shortcut = conv2d_bn(inputs, sum(widths), 1, activation=None)
    conv3x3 = conv2d_bn(inputs, widths[0], 3)
    conv5x5 = conv2d_bn(conv3x3, widths[1], 3)
    conv7x7 = conv2d_bn(conv5x5, widths[2], 3)
    out = layers.concatenate([conv3x3, conv5x5, conv7x7], axis=3)
    out = layers.BatchNormalization(axis=3)(out)
    out = layers.add([shortcut, out])
    out = layers.Activation("relu")(out)
    return layers.BatchNormalization(axis=3)(out)


def res_path(filters: int, length: int, inputs: Any) -> Any:
    """`length` units of (1x1 shortcut, 3x3 conv) -> add -> ReLU -> BatchNorm."""
    out = inputs
    for _ in range(length):
        shortcut = conv2d_bn(out, filters, 1, activation=None)
        conv = conv2d_bn(out, filters, 3)
        out = layers.add([shortcut, conv])
        out = layers.Activation("relu")(out)
        out = layers.BatchNormalization(axis=3)(out)
    return out


def _upsample(x: Any, filters: int) -> Any:
    return layers.Conv2DTranspose(filters, (2, 2), strides=(2, 2), padding="same")(x)


def multiresunet(height: int = 256, width: int = 256, in_channels: int = 1,
                 base_filters: int = 32, alpha: float = 1.67,
                 out_channels: int = 1) -> keras.Model:
    """The authors' MultiResUnet(height, width, n_channels), with sigmoid probabilities out."""
    inputs = keras.Input((height, width, in_channels))
    filters = [base_filters * 2**i for i in range(5)]
    x, skips = inputs, []
    for depth, f in enumerate(filters[:4]):
        block = multires_block(f, x, alpha)
        x = layers.MaxPooling2D(pool_size=(2, 2))(block)
        skips.append(res_path(f, 4 - depth, block))
    x = multires_block(filters[4], x, alpha)
    for f, skip in zip(reversed(filters[:4]), reversed(skips), strict=True):
        x = layers.concatenate([_upsample(x, f), skip], axis=3)
        x = multires_block(f, x, alpha)
    outputs = conv2d_bn(x, out_channels, 1, activation="sigmoid")
    return keras.Model(inputs=[inputs], outputs=[outputs], name="multiresunet")


def unet(height: int = 256, width: int = 256, in_channels: int = 1, base_filters: int = 32,
         out_channels: int = 1) -> keras.Model:
    """The paper's U-Net baseline: 2x(3x3 conv + BN + ReLU) per stage, transposed-conv up."""
    inputs = keras.Input((height, width, in_channels))
    filters = [base_filters * 2**i for i in range(5)]

    def double_conv(x: Any, f: int) -> Any:
        x = conv2d_bn(x, f, 3, scale=True)
        return conv2d_bn(x, f, 3, scale=True)

    x, skips = inputs, []
    for f in filters[:4]:
        x = double_conv(x, f)
        skips.append(x)
        x = layers.MaxPooling2D(pool_size=(2, 2))(x)
    x = double_conv(x, filters[4])
    for f, skip in zip(reversed(filters[:4]), reversed(skips), strict=True):
        x = layers.concatenate([_upsample(x, f), skip], axis=3)
        x = double_conv(x, f)
    outputs = conv2d_bn(x, out_channels, 1, activation="sigmoid")
    return keras.Model(inputs=[inputs], outputs=[outputs], name="unet")


MODELS = {"multiresunet": multiresunet, "unet": unet}


def build(name: str, image_size: int, in_channels: int = 1, base_filters: int = 32,
          alpha: float = 1.67) -> keras.Model:
    """The Keras model named as in msunet's `model.name`, for square `image_size` inputs."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    kwargs: dict[str, Any] = dict(height=image_size, width=image_size, in_channels=in_channels,
                                  base_filters=base_filters)
    if name == "multiresunet":
        kwargs["alpha"] = alpha
    return MODELS[name](**kwargs)
