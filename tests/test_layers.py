"""The fast convolution and upsampling layers against the flax/lax operations they replace."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from msunet.models import conv
from msunet.models.layers import Upsample2x

NHWC = ("NHWC", "HWIO", "NHWC")


def lax_conv(inputs, kernel):
    return lax.conv_general_dilated(inputs, kernel, (1, 1), "SAME", dimension_numbers=NHWC)


def fast_conv(inputs, kernel):
    return conv.conv_general_dilated(inputs, kernel, (1, 1), "SAME", dimension_numbers=NHWC)


def value_and_grads(function, inputs, kernel, output_grad):
    output, vjp = jax.vjp(function, inputs, kernel)
    return (output, *vjp(output_grad))


@pytest.mark.parametrize("size", [1, 3, 5])
@pytest.mark.parametrize("whole_batch", [True, False])
def test_conv_matches_lax_in_value_and_both_gradients(size, whole_batch, monkeypatch):
    if not whole_batch:  # force the row-block loop that large activations take
        monkeypatch.setattr(conv, "_WHOLE_BATCH_BYTES", 0)
        monkeypatch.setattr(conv, "_BLOCK_PIXELS", 24)  # 24 // 12 -> 2 rows, 5 blocks/image
    keys = jax.random.split(jax.random.key(size), 3)
    inputs = jax.random.normal(keys[0], (3, 10, 12, 5))
    kernel = jax.random.normal(keys[1], (size, size, 5, 7))
    output_grad = jax.random.normal(keys[2], (3, 10, 12, 7))
    fast = jax.jit(lambda x, w, g: value_and_grads(fast_conv, x, w, g))
    expected = value_and_grads(lax_conv, inputs, kernel, output_grad)
    for got, want in zip(fast(inputs, kernel, output_grad), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_conv_rows_per_block_divides_the_height():
    assert conv._rows_per_block(256, 256) == 4
    assert conv._rows_per_block(30, 100) == 10
    assert conv._rows_per_block(7, 2048) == 1  # a single row is the smallest block


def test_flax_conv_with_fast_conv_has_the_same_parameters_and_outputs():
    x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
    plain = nn.Conv(4, (3, 3), use_bias=False)
    fast = nn.Conv(4, (3, 3), use_bias=False, conv_general_dilated=conv.conv_general_dilated)
    variables = plain.init(jax.random.key(1), x)
    assert jax.tree.structure(fast.init(jax.random.key(1), x)) == jax.tree.structure(variables)
    np.testing.assert_array_equal(fast.apply(variables, x), plain.apply(variables, x))


def test_unspecialised_convolutions_fall_back_to_lax():
    x = jax.random.normal(jax.random.key(0), (1, 8, 8, 2))
    kernel = jax.random.normal(jax.random.key(1), (3, 3, 2, 4))
    strided = conv.conv_general_dilated(x, kernel, (2, 2), "SAME", dimension_numbers=NHWC)
    expected = lax.conv_general_dilated(x, kernel, (2, 2), "SAME", dimension_numbers=NHWC)
    np.testing.assert_array_equal(strided, expected)


def test_bfloat16_conv_gradients_keep_their_dtypes():
    x = jnp.ones((1, 8, 8, 2), jnp.bfloat16)
    kernel = jnp.ones((3, 3, 2, 4), jnp.bfloat16)
    grads = jax.grad(lambda a, b: fast_conv(a, b).astype(jnp.float32).sum(),
                     argnums=(0, 1))(x, kernel)
    assert [g.dtype for g in grads] == [jnp.bfloat16, jnp.bfloat16]
    np.testing.assert_allclose(np.asarray(grads[1], np.float32)[1, 1], 64.0)


def test_upsample_equals_flax_conv_transpose():
    x = jax.random.normal(jax.random.key(0), (2, 5, 6, 3))
    reference = nn.ConvTranspose(4, (2, 2), strides=(2, 2), padding="SAME")
    variables = reference.init(jax.random.key(1), x)
    variables = jax.tree.map(lambda v: v + 0.1, variables)  # a non-zero bias too
    upsample = Upsample2x(4)
    assert jax.tree.map(jnp.shape, upsample.init(jax.random.key(1), x)) == jax.tree.map(
        jnp.shape, variables)
    np.testing.assert_allclose(upsample.apply(variables, x), reference.apply(variables, x),
                               rtol=1e-6, atol=1e-6)


def test_conv_layer_benchmark_times_every_layer_both_ways(monkeypatch):
    from benchmarks import conv_layers

    monkeypatch.setattr(conv_layers, "LAYERS", [(3, 3, 4, 1), (1, 3, 4, 2), (2, 3, 4, 2)])
    rows = conv_layers.measure(size=16, batch=1)
    assert [row["input"] for row in rows] == ["1x16x16", "1x8x8", "1x8x8"]
    assert all(row[key] > 0 for row in rows for key in row if key.endswith("_ms"))
    assert conv_layers.markdown(rows).count("x |") == 3
