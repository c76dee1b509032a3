"""The optimiser: Adam as Keras 3 computes it (the default), or as optax does.

Keras 3 and optax agree on Adam's moments but not on where epsilon goes:

- Keras 3 (`keras.optimizers.Adam.update_step`):
  `var -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)`
- optax (`optax.adam`): `var -= lr * m_hat / (sqrt(v_hat) + eps)` with `m_hat = m / (1 - b1^t)`,
  `v_hat = v / (1 - b2^t)`.

Written in optax's terms, Keras adds `eps / sqrt(1 - b2^t)` to `sqrt(v_hat)`: 31.6 eps at the
first step, decaying to eps. It matters only where gradients are as small as eps, but it is the
difference between following the Keras original step for step and not (see
`tests/benchmarks/test_parity.py`). `optim.keras_epsilon` picks the rule; both keep optax's
`ScaleByAdamState`, so checkpoints have the same structure either way.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax


def scale_by_keras_adam(b1: float = 0.9, b2: float = 0.999,
                        eps: float = 1e-7) -> optax.GradientTransformation:
    """Adam's direction with Keras 3's epsilon placement (before the bias correction)."""

    def init_fn(params: optax.Params) -> optax.ScaleByAdamState:
        return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32),
                                      mu=optax.tree.zeros_like(params),
                                      nu=optax.tree.zeros_like(params))

    def update_fn(updates: optax.Updates, state: optax.ScaleByAdamState,
                  params: optax.Params | None = None,
                  ) -> tuple[optax.Updates, optax.ScaleByAdamState]:
        del params
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count = optax.safe_increment(state.count)
        t = count.astype(jnp.float32)
        correction = jnp.sqrt(1 - b2**t) / (1 - b1**t)
        updates = jax.tree.map(lambda m, v: correction * m / (jnp.sqrt(v) + eps), mu, nu)
        return updates, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def create_optimizer(optim: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam per `config.optim`: Keras' epsilon rule when `optim.keras_epsilon`, else optax's."""
    if optim.keras_epsilon:
        direction = scale_by_keras_adam(optim.b1, optim.b2, optim.eps)
    else:
        direction = optax.scale_by_adam(optim.b1, optim.b2, optim.eps)
    return optax.chain(direction, optax.scale_by_learning_rate(optim.learning_rate))
