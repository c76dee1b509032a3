"""Adam as Keras 3 computes it, and as optax does, chosen by `optim.keras_epsilon`."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from msunet.config import base_config
from msunet.optim import create_optimizer

GRADIENTS = [np.array([3e-6, -1e-7, 0.5, -2.0], np.float32) * scale for scale in (1, -2, 0.3)]


def keras_adam(gradients, lr=1e-3, b1=0.9, b2=0.999, eps=1e-7):
    """keras.optimizers.Adam.update_step, transcribed in float64 numpy."""
    variable = np.zeros(4)
    m, v = np.zeros(4), np.zeros(4)
    for t, g in enumerate(gradients, start=1):
        alpha = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
        m += (g - m) * (1 - b1)
        v += (np.square(g) - v) * (1 - b2)
        variable -= m * alpha / (np.sqrt(v) + eps)
    return variable


def run(optimizer, gradients):
    params = jnp.zeros(4)
    state = optimizer.init(params)
    for g in gradients:
        updates, state = optimizer.update(jnp.asarray(g), state, params)
        params = optax.apply_updates(params, updates)
    return np.asarray(params)


def test_keras_epsilon_follows_keras_update_step():
    optim = base_config().optim
    assert optim.keras_epsilon, "Keras' rule is the default"
    np.testing.assert_allclose(run(create_optimizer(optim), GRADIENTS), keras_adam(GRADIENTS),
                               rtol=1e-5, atol=1e-10)


def test_optax_epsilon_is_optax_adam_and_differs_on_small_gradients():
    optim = base_config().optim
    optim.keras_epsilon = False
    ours = run(create_optimizer(optim), GRADIENTS)
    np.testing.assert_array_equal(ours, run(optax.adam(1e-3, eps=1e-7), GRADIENTS))
    keras = keras_adam(GRADIENTS)
    # Large gradients: the same step. Gradients near epsilon: Keras damps the step more.
    np.testing.assert_allclose(ours[2:], keras[2:], rtol=1e-4)
    assert abs(ours[1]) > 1.5 * abs(keras[1])
    assert abs(ours[0]) > 1.2 * abs(keras[0])


def test_both_rules_keep_the_same_checkpoint_structure():
    optim = base_config().optim
    keras_state = create_optimizer(optim).init({"w": jnp.zeros(3)})
    optim.keras_epsilon = False
    optax_state = create_optimizer(optim).init({"w": jnp.zeros(3)})
    assert jax.tree.structure(keras_state) == jax.tree.structure(optax_state)
