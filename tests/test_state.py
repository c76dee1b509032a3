"""The model and train state a config describes: create_model reads MODELS and the model.* fields
each class declares; the train state holds float32 variables and Adam."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msunet.config import base_config
from msunet.models import MODELS, MultiResUNet, UNet, multires_widths
from msunet.state import TrainState, abstract_train_state, create_model, create_train_state


def model_config(smoke_config, **fields):
    model = smoke_config.model.copy_and_resolve_references()
    model.update(fields)
    return model


def test_create_model_passes_only_the_fields_the_class_declares(smoke_config):
    unet = create_model(model_config(smoke_config, name="unet", alpha=2.5))
    assert type(unet) is UNet
    assert "alpha" not in {field.name for field in dataclasses.fields(unet)}, "U-Net has none"
    model = smoke_config.model
    assert (unet.base_filters, unet.out_channels, unet.in_channels, unet.head_bias_init,
            unet.bn_momentum) == (model.base_filters, model.out_channels, model.in_channels,
                                  model.head_bias_init, model.bn_momentum)
    multires = create_model(model_config(smoke_config, name="multiresunet", alpha=2.5))
    assert type(multires) is MultiResUNet
    assert (multires.alpha, multires.base_filters) == (2.5, model.base_filters)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_model_builds_from_the_base_config(name):
    model = base_config().model
    model.name = name
    assert type(create_model(model)) is MODELS[name]


def test_an_unknown_model_name_lists_the_choices(smoke_config):
    with pytest.raises(ValueError, match=r"unknown model.name 'vnet'; expected one of "
                                         r"\['multiresunet', 'unet'\]"):
        create_model(model_config(smoke_config, name="vnet"))


def test_the_dtype_is_given_by_name_and_converted(smoke_config):
    model = create_model(model_config(smoke_config, dtype="bfloat16"))
    assert isinstance(model.dtype, np.dtype) and model.dtype == jnp.dtype("bfloat16")
    assert create_model(smoke_config.model).dtype == jnp.dtype("float32")


def test_train_state_and_its_abstract_twin(smoke_config):
    state = create_train_state(smoke_config, jax.random.key(0))
    assert isinstance(state, TrainState) and int(state.step) == 0
    variables = (state.params, state.batch_stats)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
    # Built from the model.* fields: the head reads the last block's width, starts at the prior.
    width = sum(multires_widths(smoke_config.model.base_filters, smoke_config.model.alpha))
    assert state.params["ConvBN_0"]["Conv_0"]["kernel"].shape == (1, 1, width, 1)
    np.testing.assert_array_equal(state.params["ConvBN_0"]["BatchNorm_0"]["bias"],
                                  smoke_config.model.head_bias_init)

    def shapes(tree):
        return jax.tree.map(lambda leaf: (leaf.shape, jnp.dtype(leaf.dtype)), tree)

    abstract = abstract_train_state(smoke_config)
    assert isinstance(jax.tree.leaves(abstract.params)[0], jax.ShapeDtypeStruct)
    assert shapes(abstract.params) == shapes(state.params)
    assert shapes(abstract.batch_stats) == shapes(state.batch_stats)
    assert shapes(abstract.opt_state) == shapes(state.opt_state)
