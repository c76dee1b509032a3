"""Building blocks shared by the segmentation models, matching Keras defaults.

Keras' BatchNormalization uses momentum 0.99 and epsilon 1e-3 (flax's defaults differ), and
Keras initialises kernels with Glorot-uniform; these helpers pin both so that the Flax models
are numerically the Keras reference.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from msunet.models.conv import conv_general_dilated

KERAS_BN_MOMENTUM = 0.99
KERAS_BN_EPSILON = 1e-3

Dtype = Any


def _batch_moments(x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Per-channel float32 mean and biased variance over all but the last axis, in one pass
    (E[x^2] - E[x]^2, clipped at 0: flax's `use_fast_variance`)."""
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axes)
    var = jnp.maximum(jnp.mean(jnp.square(x), axes) - jnp.square(mean), 0.0)
    return mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _train_normalize(x: jnp.ndarray, scale: jnp.ndarray, bias: jnp.ndarray, epsilon: float,
                     relu: bool) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """BatchNorm on batch statistics (+ ReLU): `(y, mean, var)`; see `_train_normalize_fwd`."""
    return _train_normalize_fwd(x, scale, bias, epsilon, relu)[0]


def _normalize_from(x32: jnp.ndarray, mean: jnp.ndarray, var: jnp.ndarray, scale: jnp.ndarray,
                    bias: jnp.ndarray, epsilon: float, relu: bool
                    ) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """`(output, multiplier, pre-activation)` of `(x - mean) / sqrt(var + eps) * scale + bias`."""
    multiplier = jax.lax.rsqrt(var + epsilon) * scale
    before = x32 * multiplier + (bias - mean * multiplier)
    return (jax.nn.relu(before) if relu else before), multiplier, before


def _train_normalize_fwd(x: jnp.ndarray, scale: jnp.ndarray, bias: jnp.ndarray,
                         epsilon: float, relu: bool) -> tuple[Any, Any]:
    """Statistics in one reduction pass, the output in one elementwise pass; only the input
    and per-channel vectors are kept for the backward pass."""
    x32 = x.astype(jnp.float32)
    mean, var = _batch_moments(x32)
    y, _, _ = _normalize_from(x32, mean, var, scale, bias, epsilon, relu)
    return (y.astype(x.dtype), mean, var), (x, mean, var, scale, bias)


def _train_normalize_bwd(epsilon: float, relu: bool, residuals: tuple[Any, ...],
                         cotangents: tuple[jnp.ndarray, ...]) -> tuple[jnp.ndarray, ...]:
    """The BatchNorm gradient in one reduction pass and one elementwise pass over the input,
    with nothing activation-sized in between: with g = dy (masked by the ReLU), x^ the
    normalised input and m the multiplier, dx = m (g - mean(g) - x^ mean(g x^)), written as
    per-channel coefficients of g and x; plus the (normally zero) terms of the returned
    statistics' own cotangents."""
    x, mean, var, scale, bias = residuals
    d_output, d_mean, d_var = cotangents
    x32 = x.astype(jnp.float32)
    count = x.size // x.shape[-1]
    _, multiplier, before = _normalize_from(x32, mean, var, scale, bias, epsilon, relu)
    grad = d_output.astype(jnp.float32)
    if relu:
        grad = jnp.where(before > 0, grad, 0.0)
    axes = tuple(range(x.ndim - 1))
    grad_sum = jnp.sum(grad, axes)
    inv_std = jax.lax.rsqrt(var + epsilon)
    grad_dot = (jnp.sum(grad * x32, axes) - mean * grad_sum) * inv_std  # sum(g x^)
    x_coefficient = (2.0 * d_var - multiplier * inv_std * grad_dot) / count
    constant = (d_mean - 2.0 * d_var * mean - multiplier * (grad_sum - mean * inv_std * grad_dot)
                ) / count
    d_x = multiplier * grad + x_coefficient * x32 + constant
    return d_x.astype(x.dtype), grad_dot, grad_sum


_train_normalize.defvjp(_train_normalize_fwd, _train_normalize_bwd)


class BatchNorm(nn.Module):
    """flax's `nn.BatchNorm` over the last axis, with a hand-written training gradient and an
    optional fused ReLU.

    Same variables as flax's ("params": "scale" (if `use_scale`), "bias"; "batch_stats":
    "mean", "var") and, being named BatchNorm, the same automatic names ("BatchNorm_0", ...), so
    checkpoints and imported Keras weights are unchanged. In training, autodiff of flax's layer
    keeps several activation-sized intermediates and makes extra passes over them; this one keeps
    only its input, computes the statistics in one pass and the gradient in two
    (`python -m benchmarks.profile`). Statistics are float32 whatever `dtype` is.
    """

    use_running_average: bool
    momentum: float = KERAS_BN_MOMENTUM
    epsilon: float = KERAS_BN_EPSILON
    use_scale: bool = True
    relu: bool = False
    bias_init: Callable[..., jnp.ndarray] = nn.initializers.zeros_init()
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        features = (x.shape[-1],)
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, features, jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, features, jnp.float32)
        scale = (self.param("scale", nn.initializers.ones_init(), features, jnp.float32)
                 if self.use_scale else jnp.ones(features, jnp.float32))
        bias = self.param("bias", self.bias_init, features, jnp.float32)
        if self.use_running_average:
            y, _, _ = _normalize_from(x.astype(jnp.float32), ra_mean.value, ra_var.value, scale,
                                      bias, self.epsilon, self.relu)
            return y.astype(self.dtype)
        y, mean, var = _train_normalize(x.astype(self.dtype), scale, bias, self.epsilon,
                                        self.relu)
        if not self.is_initializing():
            ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
            ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        return y


def batch_norm(train: bool, *, use_scale: bool = True, dtype: Dtype = jnp.float32,
               bias_init: float = 0.0, momentum: float = KERAS_BN_MOMENTUM, relu: bool = False,
               name: str | None = None) -> BatchNorm:
    """A BatchNorm (+ ReLU when `relu`) with Keras' momentum/epsilon."""
    return BatchNorm(use_running_average=not train, momentum=momentum, use_scale=use_scale,
                     relu=relu, bias_init=nn.initializers.constant(bias_init), dtype=dtype,
                     name=name)


class ConvBN(nn.Module):
    """Keras `conv2d_bn`: Conv2D (same padding, no bias) -> BatchNorm(scale=False) -> activation."""

    features: int
    kernel_size: int = 3
    activation: Callable[[jnp.ndarray], jnp.ndarray] | None = nn.relu
    bn_scale: bool = False
    bn_bias_init: float = 0.0
    bn_momentum: float = KERAS_BN_MOMENTUM
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        x = nn.Conv(
            self.features,
            (self.kernel_size, self.kernel_size),
            padding="SAME",
            use_bias=False,
            kernel_init=nn.initializers.glorot_uniform(),
            dtype=self.dtype,
            param_dtype=jnp.float32,
            conv_general_dilated=conv_general_dilated,
        )(x)
        fuse_relu = self.activation is nn.relu
        x = batch_norm(train, use_scale=self.bn_scale, bias_init=self.bn_bias_init,
                       momentum=self.bn_momentum, relu=fuse_relu, dtype=self.dtype)(x)
        if self.activation is not None and not fuse_relu:
            x = self.activation(x)
        return x

    def folded(self, x: jnp.ndarray) -> jnp.ndarray:
        """Inference with the BatchNorm folded into the convolution: one convolution with
        kernel `k * s` and bias `b - mean * s` (`s = scale / sqrt(var + eps)`), the same function
        up to float32 rounding, without the normalisation pass over the activations."""
        params, stats = self.variables["params"], self.variables["batch_stats"]["BatchNorm_0"]
        norm = params["BatchNorm_0"]
        factor = jax.lax.rsqrt(stats["var"] + KERAS_BN_EPSILON)
        if self.bn_scale:
            factor = factor * norm["scale"]
        kernel = params["Conv_0"]["kernel"] * factor
        bias = norm["bias"] - stats["mean"] * factor
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        x = conv_general_dilated(x, kernel, (1, 1), "SAME",
                                 dimension_numbers=("NHWC", "HWIO", "NHWC")) + bias
        if self.activation is not None:
            x = self.activation(x)
        return x


@contextlib.contextmanager
def folded_batch_norm() -> Iterator[None]:
    """Within this context, every `ConvBN` applied with `train=False` runs `ConvBN.folded`.

    For inference (`msunet.inference`): a model's variables and parameter tree stay as trained,
    the folding happens inside the jitted function (a few kernel-sized products). Training and
    `init` are untouched, and BatchNorms that follow an addition (MultiResUNet's residual joins)
    have no convolution to fold into and stay as they are.
    """

    def interceptor(next_fun: Callable[..., Any], args: tuple[Any, ...],
                    kwargs: dict[str, Any], context: nn.module.InterceptorContext) -> Any:
        module = context.module
        if (isinstance(module, ConvBN) and context.method_name == "__call__"
                and kwargs.get("train") is False and not module.is_initializing()):
            return module.folded(*args)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        yield


class Upsample2x(nn.Module):
    """Keras Conv2DTranspose(features, 2x2, strides 2, padding same) with bias, no BN.

    Same parameters ("kernel" (2, 2, in, features), "bias") and outputs as flax's
    `nn.ConvTranspose(features, (2, 2), strides=(2, 2), padding="SAME")`, computed as one
    matmul and a pixel shuffle: with the stride equal to the kernel, each output pixel comes
    from exactly one input pixel. XLA:CPU runs the transposed convolution's gradients as dilated
    convolutions, far slower than this matmul form (`python -m benchmarks.conv_layers`).
    """

    features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        kernel = self.param("kernel", nn.initializers.glorot_uniform(),
                            (2, 2, x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        images, height, width, _ = x.shape
        # flax's ConvTranspose puts kernel tap (a, b) at output offset (1 - a, 1 - b).
        taps = jnp.flip(kernel, (0, 1))
        y = jnp.einsum("nhwc,abck->nhawbk", x, taps)
        return y.reshape(images, 2 * height, 2 * width, self.features) + bias


def upsample(features: int, dtype: Dtype, name: str | None = None) -> Upsample2x:
    """The decoder's 2x upsampling; `name` keeps flax's "ConvTranspose_i" parameter paths."""
    return Upsample2x(features, dtype=dtype, name=name)


def _windows(x: jnp.ndarray) -> jnp.ndarray:
    """(N, H, W, C) -> (N, H/2, W/2, C, 4): each 2x2 window's pixels in row-major order."""
    images, height, width, channels = x.shape
    return (x.reshape(images, height // 2, 2, width // 2, 2, channels)
            .transpose(0, 1, 3, 5, 2, 4).reshape(images, height // 2, width // 2, channels, 4))


@jax.custom_vjp
def _max_pool_even(x: jnp.ndarray) -> jnp.ndarray:
    return jnp.max(_windows(x), axis=-1)


def _max_pool_even_fwd(x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    return _max_pool_even(x), x


def _max_pool_even_bwd(x: jnp.ndarray, d_output: jnp.ndarray) -> tuple[jnp.ndarray]:
    """Each window's gradient to its first maximum, as XLA's select-and-scatter and
    TensorFlow's MaxPoolGrad give it, in one fused elementwise pass."""
    first = jnp.argmax(_windows(x), axis=-1)
    spread = jnp.where(jnp.arange(4) == first[..., None], d_output[..., None], 0)
    images, height, width, channels = x.shape
    d_x = (spread.reshape(images, height // 2, width // 2, channels, 2, 2)
           .transpose(0, 1, 4, 2, 5, 3).reshape(x.shape))
    return (d_x.astype(x.dtype),)


_max_pool_even.defvjp(_max_pool_even_fwd, _max_pool_even_bwd)


def max_pool_2x2(x: jnp.ndarray) -> jnp.ndarray:
    """2x2 max-pooling with stride 2 (Keras MaxPooling2D default; an odd last row or column
    is dropped). Same values and gradient as `nn.max_pool`, but its gradient is one elementwise
    pass: XLA:CPU's select-and-scatter kept activation-sized int32 index arrays alive in the
    train step (`--xla_dump_to` memory-usage report)."""
    _, height, width, _ = x.shape
    return _max_pool_even(x[:, :height - height % 2, :width - width % 2])


def check_input(x: jnp.ndarray, *, multiple: int, in_channels: int | None = None) -> None:
    """Raise a ValueError when `x` is not NHWC with H and W multiples of `multiple`."""
    if x.ndim != 4:
        raise ValueError("expected an NHWC batch of rank 4 (batch, height, width, channels), "
                         f"got shape {x.shape}")
    _, height, width, channels = x.shape
    if height % multiple or width % multiple:
        raise ValueError(
            f"height and width must be multiples of {multiple} (four 2x2 poolings), got "
            f"{height}x{width}; resize or pad the input, e.g. to "
            f"{-(-height // multiple) * multiple}x{-(-width // multiple) * multiple}"
        )
    if in_channels is not None and channels != in_channels:
        raise ValueError(f"expected {in_channels} input channel(s), got {channels} "
                         f"(shape {x.shape})")
