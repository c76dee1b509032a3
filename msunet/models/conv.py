"""A drop-in `lax.conv_general_dilated` whose gradients are fast on XLA:CPU.

XLA:CPU computes the kernel gradient of a stride-1 "SAME" convolution as a convolution with a
kernel as large as the image, 5-12x slower than the forward convolution on the MultiResUNet
shapes, and runs 1x1 convolutions (and their gradients) 2-30x slower than the same matmul.
TensorFlow avoids the first by forming im2col patches a few rows at a time and contracting them
with the output gradient; `kernel_gradient` does the same inside the jitted graph, a `fori_loop`
over blocks of rows. The forward pass and input gradient stay XLA's convolutions (1x1 ones become
matmuls over channels), so outputs equal `nn.Conv`'s and gradients agree to float32 rounding.
The blocked gradient is staged for CPU only (`lax.platform_dependent`): on GPU/TPU the backward
pass is XLA's own.

Pass `conv_general_dilated=conv_general_dilated` to `flax.linen.Conv`; shapes this module does not
specialise (strides, dilation, groups, other layouts or paddings) go to `lax` unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

_NHWC = ("NHWC", "HWIO", "NHWC")
# Pixels per im2col block: ~1k keeps a block of (pixels, 9 * channels) in the L2/L3 caches.
_BLOCK_PIXELS = 1024
# Below this many patch bytes one matmul over the whole batch beats the loop's overhead.
_WHOLE_BATCH_BYTES = 16 * 2**20


def _im2col_rows(padded: jax.Array, row: jax.Array | int, rows: int, width: int,
                 size: int) -> jax.Array:
    """(images * rows * width, size * size * channels) patches of `rows` output rows from `row`."""
    images, _, _, channels = padded.shape
    block = lax.dynamic_slice_in_dim(padded, row, rows + size - 1, axis=1)
    shifted = [block[:, i:i + rows, j:j + width, :] for i in range(size) for j in range(size)]
    return jnp.concatenate(shifted, axis=-1).reshape(images * rows * width,
                                                     size * size * channels)


def _rows_per_block(height: int, row_pixels: int) -> int:
    """The largest divisor of `height` with at most ~_BLOCK_PIXELS pixels per block (>= 1 row)."""
    target = max(1, _BLOCK_PIXELS // row_pixels)
    return max(rows for rows in range(1, height + 1) if height % rows == 0 and rows <= target)


def kernel_gradient(inputs: jax.Array, output_grad: jax.Array, size: int) -> jax.Array:
    """d loss / d kernel (size, size, in, out) of a stride-1 SAME conv, by blocked im2col.

    Blocks are rows across the whole batch, never a slice of the batch, so a batch sharded over
    devices stays sharded (each device sums its own images; XLA adds the all-reduce).
    """
    images, height, width, in_features = inputs.shape
    out_features = output_grad.shape[-1]
    pad = size // 2
    padded = jnp.pad(inputs, ((0, 0), (pad, pad), (pad, pad), (0, 0))) if pad else inputs
    patch_bytes = inputs.size * size * size * jnp.dtype(inputs.dtype).itemsize
    rows = (height if patch_bytes <= _WHOLE_BATCH_BYTES
            else _rows_per_block(height, images * width))

    def add_block(block: jax.Array, total: jax.Array) -> jax.Array:
        row = block * rows
        patches = _im2col_rows(padded, row, rows, width, size)
        grad_rows = lax.dynamic_slice_in_dim(output_grad, row, rows, axis=1)
        return total + lax.dot_general(patches, grad_rows.reshape(-1, out_features),
                                       (((0,), (0,)), ((), ())),
                                       preferred_element_type=jnp.float32)

    total = lax.fori_loop(0, height // rows, add_block,
                          jnp.zeros((size * size * in_features, out_features), jnp.float32))
    return total.reshape(size, size, in_features, out_features)


def _forward(inputs: jax.Array, kernel: jax.Array) -> jax.Array:
    """XLA's convolution; a 1x1 one as a matmul over channels, which XLA:CPU runs faster
    (`python -m benchmarks.conv_layers`)."""
    if kernel.shape[0] == 1:
        return jnp.einsum("nhwc,ck->nhwk", inputs, kernel[0, 0])
    return lax.conv_general_dilated(inputs, kernel, (1, 1), "SAME", dimension_numbers=_NHWC)


@jax.custom_vjp
def _same_conv(inputs: jax.Array, kernel: jax.Array) -> jax.Array:
    return _forward(inputs, kernel)


def _same_conv_forward(inputs: jax.Array, kernel: jax.Array) -> tuple[jax.Array, Any]:
    return _forward(inputs, kernel), (inputs, kernel)


def _xla_gradients(inputs: jax.Array, kernel: jax.Array,
                   output_grad: jax.Array) -> tuple[jax.Array, jax.Array]:
    """XLA's own convolution gradients: the right choice on GPU/TPU (cuDNN and friends)."""
    _, vjp = jax.vjp(_forward, inputs, kernel)
    return vjp(output_grad)


def _cpu_gradients(inputs: jax.Array, kernel: jax.Array,
                   output_grad: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Input gradient as a forward conv, kernel gradient by blocked im2col."""
    # The input gradient of an odd square SAME conv is a SAME conv with the kernel flipped in
    # space and its in/out features swapped: a forward convolution XLA:CPU runs at full speed.
    input_grad = _forward(output_grad, jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2))
    kernel_grad = kernel_gradient(inputs, output_grad, kernel.shape[0])
    return input_grad.astype(inputs.dtype), kernel_grad.astype(kernel.dtype)


def _same_conv_backward(residuals: Any, output_grad: jax.Array) -> tuple[jax.Array, jax.Array]:
    inputs, kernel = residuals
    return lax.platform_dependent(inputs, kernel, output_grad, cpu=_cpu_gradients,
                                  default=_xla_gradients)


_same_conv.defvjp(_same_conv_forward, _same_conv_backward)


def _is_same_padding(padding: Any, size: int) -> bool:
    if isinstance(padding, str):
        return padding.upper() == "SAME"
    half = size // 2
    return all(tuple(pair) == (half, half) for pair in padding)


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                         padding: Any, lhs_dilation: Sequence[int] | None = None,
                         rhs_dilation: Sequence[int] | None = None,
                         dimension_numbers: Any = None, feature_group_count: int = 1,
                         batch_group_count: int = 1, precision: Any = None,
                         preferred_element_type: Any = None) -> jax.Array:
    """`lax.conv_general_dilated` with the fast kernel gradient for odd square stride-1 SAME
    2D convolutions in NHWC/HWIO; everything else is passed to `lax` unchanged."""
    kernel_h, kernel_w = rhs.shape[:2] if rhs.ndim == 4 else (0, 0)
    specialised = (
        lhs.ndim == 4 and kernel_h == kernel_w and kernel_h % 2 == 1
        and tuple(window_strides) == (1, 1)
        and all(d == 1 for d in (lhs_dilation or (1, 1)))
        and all(d == 1 for d in (rhs_dilation or (1, 1)))
        and feature_group_count == 1 and batch_group_count == 1
        and precision is None and preferred_element_type is None
        and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
        == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
        and _is_same_padding(padding, kernel_h)
    )
    if specialised:
        return _same_conv(lhs, rhs)
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count, batch_group_count=batch_group_count,
        precision=precision, preferred_element_type=preferred_element_type)
