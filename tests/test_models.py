"""The Flax models against the Keras reference's architecture card, and the U-Net skeleton both
networks are built on (a new network needs only its block)."""

import contextlib
import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msunet import MultiResUNet, UNet
from msunet.models import MODELS, multires_widths
from msunet.models.layers import KERAS_BN_EPSILON, KERAS_BN_MOMENTUM, ConvBN, folded_batch_norm
from msunet.models.unet import STAGES, UNetSkeleton


def init(model, x):
    """Variables of `model` for input `x`, initialised under jit (eager init compiles per op)."""
    return jax.jit(functools.partial(model.init, train=False))(jax.random.key(0), x)


def count(module, channels, size=64):
    variables = jax.eval_shape(
        lambda: module.init(jax.random.key(0), jnp.zeros((1, size, size, channels)), train=False))
    return {kind: sum(leaf.size for leaf in jax.tree.leaves(tree))
            for kind, tree in variables.items()}


class OneConvUNet(UNetSkeleton):
    """A network written the way the README says: the skeleton plus a block (one ConvBN)."""

    def block(self, filters):
        return ConvBN(filters, 3, dtype=self.dtype, bn_momentum=self.bn_momentum)


# --- the skeleton ------------------------------------------------------------------------------

def test_both_networks_are_unet_skeletons():
    assert issubclass(UNet, UNetSkeleton) and issubclass(MultiResUNet, UNetSkeleton)
    assert MODELS == {"multiresunet": MultiResUNet, "unet": UNet}
    assert STAGES == 4


def test_a_new_model_needs_only_a_block():
    model = OneConvUNet(base_filters=4)
    x = jnp.ones((2, 32, 32, 1))
    variables = init(model, x)
    logits = jax.jit(functools.partial(model.apply, train=False))(variables, x)
    assert logits.shape == (2, 32, 32, 1) and logits.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(logits)))
    # The skeleton supplies the rest: 9 blocks (4 down, bottleneck, 4 up), 4 upsamplings, head.
    params = variables["params"]
    assert set(params) == {f"ConvBN_{i}" for i in range(10)} | {f"ConvTranspose_{i}"
                                                                  for i in range(4)}
    assert params["ConvBN_9"]["Conv_0"]["kernel"].shape == (1, 1, 4, 1), "the 1x1 head"
    assert params["ConvBN_4"]["Conv_0"]["kernel"].shape == (3, 3, 32, 64), "the bottleneck"


def test_the_skeleton_alone_has_no_block():
    with pytest.raises(NotImplementedError, match="must define block"):
        UNetSkeleton(base_filters=4).init(jax.random.key(0), jnp.zeros((1, 32, 32, 1)),
                                          train=False)


def test_unet_blocks_are_double_convs_with_scaled_batch_norms():
    variables = jax.eval_shape(lambda: UNet(base_filters=4).init(
        jax.random.key(0), jnp.zeros((1, 32, 32, 1)), train=False))
    params = variables["params"]
    assert {name for name in params if name.startswith("DoubleConv_")} == {
        f"DoubleConv_{i}" for i in range(9)}
    block = params["DoubleConv_0"]
    assert set(block) == {"ConvBN_0", "ConvBN_1"}
    assert set(block["ConvBN_0"]["BatchNorm_0"]) == {"scale", "bias"}
    # conv_bn()(conv_bn()(x)): the outer ConvBN is created (and named) first, the inner one
    # meets the input; names as in every msunet checkpoint so far.
    assert block["ConvBN_1"]["Conv_0"]["kernel"].shape == (3, 3, 1, 4)
    assert block["ConvBN_0"]["Conv_0"]["kernel"].shape == (3, 3, 4, 4)


# --- parameter counts and Keras conventions ----------------------------------------------------

@pytest.mark.parametrize("channels, total, trainable", [(1, 7_262_504, 7_237_982),
                                                        (3, 7_262_750, 7_238_228)])
def test_multiresunet_parameter_count_matches_keras(channels, total, trainable):
    counts = count(MultiResUNet(), channels)
    assert counts["params"] == trainable
    assert counts["params"] + counts["batch_stats"] == total


def test_parameter_count_does_not_depend_on_image_size():
    assert count(MultiResUNet(), 1, size=64) == count(MultiResUNet(), 1, size=128)


def test_unet_baseline_is_slightly_larger_than_multiresunet():
    unet, multires = count(UNet(), 1), count(MultiResUNet(), 1)
    assert sum(unet.values()) == 7_768_355
    assert sum(multires.values()) < sum(unet.values()) < 1.1 * sum(multires.values())


@pytest.mark.parametrize("filters, expected", [(32, (8, 17, 26)), (64, (17, 35, 53)),
                                               (128, (35, 71, 106)), (256, (71, 142, 213)),
                                               (512, (142, 284, 427))])
def test_multires_block_widths_follow_keras_int_rounding(filters, expected):
    assert multires_widths(filters) == expected


def test_layer_conventions_match_keras():
    variables = jax.eval_shape(lambda: MultiResUNet().init(
        jax.random.key(0), jnp.zeros((1, 32, 32, 1)), train=False))
    flat = flax.traverse_util.flatten_dict(variables["params"])
    conv_leaves = {path[-1] for path in flat if path[-2].startswith("Conv_")}
    transpose_leaves = {path[-1] for path in flat if path[-2].startswith("ConvTranspose_")}
    assert conv_leaves == {"kernel"}, "conv2d_bn convolutions have no bias"
    assert transpose_leaves == {"kernel", "bias"}, "Conv2DTranspose keeps its bias"
    conv_bn_norms = {path[-1] for path in flat
                     if len(path) >= 3 and path[-3].startswith("ConvBN_")
                     and path[-2].startswith("BatchNorm_")}
    assert conv_bn_norms == {"bias"}, "BatchNorm(scale=False) inside conv2d_bn"
    head = variables["params"]["ConvBN_0"]
    assert head["Conv_0"]["kernel"].shape == (1, 1, 51, 1)
    assert set(head["BatchNorm_0"]) == {"bias"}, "the head's BatchNorm sits before the sigmoid"


def test_batch_norm_uses_keras_momentum_and_epsilon():
    model = MultiResUNet(base_filters=4)
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 1)) * 3 + 5
    variables = init(model, x)
    _, updates = jax.jit(functools.partial(model.apply, train=True, mutable=["batch_stats"]))(
        variables, x)
    first_bn = updates["batch_stats"]["MultiResBlock_0"]["ConvBN_0"]["BatchNorm_0"]
    conv = variables["params"]["MultiResBlock_0"]["ConvBN_0"]["Conv_0"]["kernel"]
    batch_mean = jnp.mean(jnp.einsum("nhwc,co->nhwo", x, conv[0, 0]), axis=(0, 1, 2))
    np.testing.assert_allclose(first_bn["mean"], (1 - KERAS_BN_MOMENTUM) * batch_mean, rtol=1e-4)
    assert (KERAS_BN_MOMENTUM, KERAS_BN_EPSILON) == (0.99, 1e-3)


# --- inputs and outputs ------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_output_is_float32_logits_of_input_size(name, dtype):
    model = MODELS[name](base_filters=4, dtype=dtype)
    x = jnp.ones((2, 64, 48, 1))
    variables = init(model, x)
    logits = jax.jit(functools.partial(model.apply, train=False))(variables, x)
    assert logits.shape == (2, 64, 48, 1)
    assert logits.dtype == jnp.float32
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
    assert bool(jnp.all(jnp.isfinite(logits)))


def test_out_channels():
    model = UNet(base_filters=4, out_channels=3)
    x = jnp.ones((1, 32, 32, 1))
    assert jax.jit(functools.partial(model.apply, train=False))(init(model, x), x).shape == (
        1, 32, 32, 3)


@pytest.mark.parametrize("shape, message", [((1, 60, 64, 1), "multiples of 16"),
                                            ((64, 64, 1), "rank 4"),
                                            ((1, 64, 64, 3), "expected 1 input channel")])
def test_bad_input_shapes_raise_clear_errors(shape, message):
    with pytest.raises(ValueError, match=message):
        MultiResUNet(base_filters=4, in_channels=1).init(jax.random.key(0), jnp.zeros(shape),
                                                         train=False)


# --- BatchNorm folded into the convolutions (inference) ----------------------------------------

def with_trained_statistics(variables):
    """`variables` with BatchNorm parameters and running statistics far from their init values,
    so that folding has something to fold."""
    keys = iter(jax.random.split(jax.random.key(1), 10_000))

    def perturb(path, leaf):
        name = path[-1].key
        if name == "var":
            return jax.random.uniform(next(keys), leaf.shape, minval=0.3, maxval=3.0)
        if name in ("mean", "bias") or (name == "scale" and "BatchNorm" in str(path[-2].key)):
            return leaf + jax.random.normal(next(keys), leaf.shape) * 0.5
        return leaf

    return jax.tree_util.tree_map_with_path(perturb, variables)


@pytest.mark.parametrize("name", ["unet", "multiresunet"])
def test_folded_batch_norm_gives_the_same_logits(name, monkeypatch):
    model = MODELS[name](base_filters=4)
    x = jax.random.normal(jax.random.key(2), (2, 32, 32, 1))
    variables = with_trained_statistics(init(model, x))
    convs = [path for path in flax.traverse_util.flatten_dict(variables["params"])
             if path[-2:] == ("Conv_0", "kernel")]
    calls = []
    folded = ConvBN.folded
    monkeypatch.setattr(ConvBN, "folded", lambda self, x: calls.append(1) or folded(self, x))
    plain = jax.jit(functools.partial(model.apply, train=False))(variables, x)

    def apply_folded(variables, x):
        with folded_batch_norm():
            return model.apply(variables, x, train=False)

    result = jax.jit(apply_folded)(variables, x)
    assert len(calls) == len(convs) > 0, "every ConvBN folds, in one trace"
    scale = float(jnp.max(jnp.abs(plain)))
    assert scale > 0.1, "logits large enough for a relative bound to mean something"
    np.testing.assert_allclose(result, plain, rtol=1e-5, atol=1e-5 * scale)


def test_folding_leaves_training_alone():
    model = UNet(base_filters=4)  # ConvBN is the same in every model
    x = jax.random.normal(jax.random.key(2), (2, 32, 32, 1))
    variables = with_trained_statistics(init(model, x))

    def train(variables, x, fold):
        with folded_batch_norm() if fold else contextlib.nullcontext():
            return model.apply(variables, x, train=True, mutable=["batch_stats"])

    train = jax.jit(train, static_argnums=2)
    (trained, updates), (expected, expected_updates) = train(variables, x, True), train(
        variables, x, False)
    np.testing.assert_array_equal(trained, expected)
    jax.tree.map(np.testing.assert_array_equal, updates, expected_updates)
