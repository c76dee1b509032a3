"""msunet.models.conv and msunet.models.layers: the fast convolution and upsampling layers
against the flax/lax operations they replace, and the Keras-default building blocks."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from msunet.models import conv
from msunet.models.layers import (
    KERAS_BN_EPSILON,
    ConvBN,
    Upsample2x,
    _train_normalize,
    batch_norm,
    check_input,
    max_pool_2x2,
    upsample,
)

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


def test_upsample_doubles_the_size_in_the_compute_dtype():
    layer = upsample(4, jnp.bfloat16)
    assert isinstance(layer, Upsample2x) and layer.features == 4
    x = jnp.ones((1, 3, 5, 2), jnp.bfloat16)
    y, variables = layer.init_with_output(jax.random.key(0), x)
    assert y.shape == (1, 6, 10, 4) and y.dtype == jnp.bfloat16
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))


# --- Keras-default building blocks -------------------------------------------------------------

def test_batch_norm_has_keras_settings_and_float32_variables():
    norm = batch_norm(True, use_scale=False, dtype=jnp.bfloat16, bias_init=-3.0, momentum=0.9)
    assert (norm.momentum, norm.epsilon, norm.use_running_average, norm.use_scale) == (
        0.9, KERAS_BN_EPSILON, False, False)
    assert batch_norm(False).use_running_average and batch_norm(False).momentum == 0.99
    variables = norm.init(jax.random.key(0), jnp.ones((2, 4, 4, 3), jnp.bfloat16))
    assert set(variables["params"]) == {"bias"}
    np.testing.assert_array_equal(variables["params"]["bias"], -3.0)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))


@pytest.mark.parametrize("use_scale, relu", [(False, True), (True, False)])
def test_batch_norm_equals_flax_in_values_gradients_and_statistics(use_scale, relu):
    """The hand-written training gradient (and fused ReLU) is flax's BatchNorm (+ nn.relu)."""
    ours = batch_norm(True, use_scale=use_scale, bias_init=0.3, relu=relu)
    theirs = nn.BatchNorm(use_running_average=False, momentum=0.99, epsilon=KERAS_BN_EPSILON,
                          use_scale=use_scale, bias_init=nn.initializers.constant(0.3))
    x = 2.0 + 3.0 * jax.random.normal(jax.random.key(0), (3, 6, 5, 4))
    weights = jax.random.normal(jax.random.key(1), (3, 6, 5, 4))
    variables = theirs.init(jax.random.key(2), x)
    assert jax.tree.map(jnp.shape, ours.init(jax.random.key(2), x)) == jax.tree.map(
        jnp.shape, variables)
    params = jax.tree.map(lambda p: p + jax.random.uniform(jax.random.key(3), p.shape),
                          variables["params"])

    def loss(layer, apply_relu):
        def value(params, x):
            y, updates = layer.apply({"params": params, "batch_stats": variables["batch_stats"]},
                                     x, mutable=["batch_stats"])
            y = nn.relu(y) if apply_relu else y
            return jnp.sum(weights * y), (y, updates["batch_stats"])
        return jax.value_and_grad(value, argnums=(0, 1), has_aux=True)(params, x)

    (_, (y_ours, stats_ours)), grads_ours = loss(ours, False)
    (_, (y_theirs, stats_theirs)), grads_theirs = loss(theirs, relu)
    np.testing.assert_allclose(y_ours, y_theirs, rtol=1e-5, atol=1e-5)
    if relu:
        assert float(y_ours.min()) == 0.0
    for a, b in zip(jax.tree.leaves((grads_ours, stats_ours)),
                    jax.tree.leaves((grads_theirs, stats_theirs)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    inference = batch_norm(False, use_scale=use_scale, relu=relu)
    trained = {"params": params, "batch_stats": stats_theirs}
    expected = theirs.clone(use_running_average=True).apply(trained, x)
    np.testing.assert_allclose(inference.apply(trained, x),
                               nn.relu(expected) if relu else expected, rtol=1e-5, atol=1e-5)


def test_batch_norm_gradient_through_its_statistics():
    """The statistics it returns carry their own gradient (zero in training, not dropped)."""
    x = jax.random.normal(jax.random.key(0), (2, 3, 3, 2))
    ones, zeros = jnp.ones(2), jnp.zeros(2)

    def through_stats(x):
        _, mean, var = _train_normalize(x, ones, zeros, 1e-3, False)
        return jnp.sum(mean * jnp.array([1.0, 2.0])) + jnp.sum(var)

    def reference(x):
        mean = jnp.mean(x, (0, 1, 2))
        return jnp.sum(mean * jnp.array([1.0, 2.0])) + jnp.sum(jnp.var(x, (0, 1, 2)))

    np.testing.assert_allclose(jax.grad(through_stats)(x), jax.grad(reference)(x), atol=1e-6)


def test_conv_bn_is_a_bias_free_conv_then_batch_norm():
    layer = ConvBN(5, 3, activation=None)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    variables = layer.init(jax.random.key(1), x, train=False)
    assert set(variables["params"]) == {"Conv_0", "BatchNorm_0"}
    assert set(variables["params"]["Conv_0"]) == {"kernel"}
    assert variables["params"]["Conv_0"]["kernel"].shape == (3, 3, 3, 5)
    out = layer.apply(variables, x, train=False)
    assert out.shape == (2, 8, 8, 5) and float(out.min()) < 0, "no activation: negatives remain"


def test_max_pool_equals_flax_in_value_and_gradient_ties_included():
    x = jax.random.normal(jax.random.key(0), (2, 8, 7, 3))
    x = jnp.where(x < 0.3, 0.0, x)  # ties: whole windows of equal values
    reference = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))  # noqa: E731
    np.testing.assert_array_equal(max_pool_2x2(x), reference(x))
    weights = jax.random.normal(jax.random.key(1), (2, 4, 3, 3))
    grad = jax.grad(lambda x: jnp.sum(weights * max_pool_2x2(x)))(x)
    np.testing.assert_array_equal(grad, jax.grad(lambda x: jnp.sum(weights * reference(x)))(x))


def test_max_pool_halves_and_check_input_suggests_a_size():
    assert max_pool_2x2(jnp.ones((1, 8, 6, 2))).shape == (1, 4, 3, 2)
    check_input(jnp.zeros((1, 32, 48, 1)), multiple=16, in_channels=1)
    with pytest.raises(ValueError, match="e.g. to 64x80"):
        check_input(jnp.zeros((1, 60, 70, 1)), multiple=16)


def test_the_generic_gradient_path_equals_the_cpu_one():
    """`platform_dependent`'s default branch (XLA's own gradients, what a GPU runs), run on CPU,
    against the CPU branch (blocked im2col kernel gradient)."""
    keys = jax.random.split(jax.random.key(3), 3)
    inputs = jax.random.normal(keys[0], (2, 16, 16, 5))
    kernel = jax.random.normal(keys[1], (3, 3, 5, 7))
    output_grad = jax.random.normal(keys[2], (2, 16, 16, 7))
    generic = jax.jit(conv._xla_gradients)(inputs, kernel, output_grad)
    cpu = jax.jit(conv._cpu_gradients)(inputs, kernel, output_grad)
    for a, b in zip(generic, cpu, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
