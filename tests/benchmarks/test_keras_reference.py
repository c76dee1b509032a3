"""The Keras reference models have the Flax models' parameter counts (needs the bench extra)."""

import jax
import jax.numpy as jnp
import pytest

pytest.importorskip("tensorflow", reason="the Keras reference needs the bench extra: "
                    "pip install -e '.[bench]'")

from benchmarks import keras_reference  # noqa: E402
from msunet.models import MODELS  # noqa: E402


def flax_counts(name, channels, base_filters):
    variables = jax.eval_shape(lambda: MODELS[name](base_filters=base_filters).init(
        jax.random.key(0), jnp.zeros((1, 32, 32, channels)), train=False))
    sizes = {kind: sum(leaf.size for leaf in jax.tree.leaves(tree))
             for kind, tree in variables.items()}
    return sizes["params"], sizes["params"] + sizes["batch_stats"]


@pytest.mark.parametrize("name, channels, base_filters", [
    ("multiresunet", 1, 32), ("multiresunet", 3, 32), ("unet", 1, 32),
    ("multiresunet", 1, 4), ("unet", 3, 8)])
def test_keras_and_flax_parameter_counts_are_equal(name, channels, base_filters):
    model = keras_reference.MODELS[name](height=32, width=32, in_channels=channels,
                                         base_filters=base_filters)
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    assert (trainable, model.count_params()) == flax_counts(name, channels, base_filters)


def test_full_width_multiresunet_matches_the_paper_count():
    assert keras_reference.multiresunet(256, 256, 1).count_params() == 7_262_504


def test_conv2d_bn_has_no_conv_bias_and_no_bn_scale():
    model = keras_reference.multiresunet(32, 32, 1, base_filters=4)
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert convs and all(not layer.use_bias for layer in convs)
    head_bn = model.layers[-2]
    assert type(head_bn).__name__ == "BatchNormalization" and not head_bn.scale
    assert model.layers[-1].activation.__name__ == "sigmoid"


def test_build_rejects_unknown_model():
    with pytest.raises(ValueError, match="unknown model"):
        keras_reference.build("segnet", 32)
