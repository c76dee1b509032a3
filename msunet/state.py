"""The model and its training state, built from a config: what training, inference, convert
and the benchmarks share (none of them imports the training loop to build a model).

`create_model` is config-driven: `model.name` picks a class from `msunet.models.MODELS` and the
`model.*` fields that class declares become its arguments, so a new model needs no change here.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from flax.training import train_state

from msunet.models import MODELS
from msunet.optim import create_optimizer


class TrainState(train_state.TrainState):
    """Params and Adam state, plus BatchNorm running statistics."""

    batch_stats: Any


def create_model(model_config: ml_collections.ConfigDict) -> nn.Module:
    """The network named by `model.name`, built from the `model.*` fields its class declares
    (`dtype` given as a name such as "bfloat16"); fields it does not declare (e.g. `alpha` for
    U-Net) do not apply to it."""
    if model_config.name not in MODELS:
        raise ValueError(f"unknown model.name {model_config.name!r}; expected one of "
                         f"{sorted(MODELS)}")
    model_class = MODELS[model_config.name]
    declared = {field.name for field in dataclasses.fields(model_class)} - {"parent", "name"}
    kwargs = {key: value for key, value in model_config.items() if key in declared}
    if "dtype" in kwargs:
        kwargs["dtype"] = jnp.dtype(kwargs["dtype"])
    return model_class(**kwargs)


def create_train_state(config: ml_collections.ConfigDict, rng: jax.Array) -> TrainState:
    """Initialise the model's variables and the Adam optimiser of `config.optim`."""
    model = create_model(config.model)
    size = config.data.image_size
    dummy = jnp.zeros((1, size, size, config.model.in_channels), jnp.float32)
    # Initialisers drawn from a threefry key take XLA:CPU several times longer to compile than
    # from an RngBitGenerator ("rbg") key seeded from `rng`, which is as reproducible here.
    init_key = jax.random.wrap_key_data(jax.random.bits(rng, (4,), jnp.uint32), impl="rbg")
    variables = jax.jit(functools.partial(model.init, train=False))(init_key, dummy)
    return TrainState.create(apply_fn=model.apply, params=variables["params"],
                             batch_stats=variables["batch_stats"],
                             tx=create_optimizer(config.optim))


def abstract_train_state(config: ml_collections.ConfigDict) -> TrainState:
    """The shapes and dtypes of `create_train_state(config, ...)`, without computing it."""
    return jax.eval_shape(lambda: create_train_state(config, jax.random.key(0)))
