"""The Checkpointer: latest steps (train state, data-iterator position, loop bookkeeping) and the
best step, restored exactly; clear errors for what is not there."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msunet.checkpointing import Checkpointer
from msunet.data import SyntheticMammograms, train_dataset
from msunet.state import abstract_train_state, create_train_state


@pytest.fixture(scope="module")
def state(smoke_config):
    """A train state whose every array (Adam moments and BN statistics too) differs from a
    fresh one's, so a restore that dropped any part would show."""
    fresh = create_train_state(smoke_config, jax.random.key(0))
    moved = jax.tree.map(lambda leaf: jnp.asarray(np.asarray(leaf) + 1),
                         (fresh.params, fresh.batch_stats, fresh.opt_state))
    return fresh.replace(step=jnp.asarray(7, jnp.int32), params=moved[0],
                         batch_stats=moved[1], opt_state=moved[2])


def batches(config):
    return iter(train_dataset(config.data, SyntheticMammograms(8, 64), batch_size=4, seed=0))


def test_checkpoint_save_restore_gives_identical_state(smoke_config, state, tmp_path):
    iterator = batches(smoke_config)
    next(iterator)
    checkpointer = Checkpointer(tmp_path / "latest", tmp_path / "best")
    checkpointer.save(1, state, iterator, {"note": "x"})
    checkpointer.save_best(1, state)
    expected_next = next(iterator)
    checkpointer.wait()

    abstract = abstract_train_state(smoke_config)
    resumed_iterator = batches(smoke_config)
    reopened = Checkpointer(tmp_path / "latest", tmp_path / "best")
    restored = reopened.restore(abstract, data_iterator=resumed_iterator)
    assert restored.step == 1 and restored.meta == {"note": "x"}
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored.state), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(next(resumed_iterator)["image"], expected_next["image"])
    best = reopened.restore(abstract, kind="best")
    assert best.step == 1 and best.meta == {}
    np.testing.assert_array_equal(jax.tree.leaves(best.state.params)[0],
                                  jax.tree.leaves(state.params)[0])
    reopened.close()
    checkpointer.close()


def test_old_steps_are_dropped_and_any_kept_step_restores(smoke_config, state, tmp_path):
    checkpointer = Checkpointer(tmp_path / "latest", tmp_path / "best", max_to_keep=2)
    iterator = batches(smoke_config)
    for step in (1, 2, 3):
        checkpointer.save(step, state, iterator, {"step": step})
        checkpointer.save_best(step, state)
    checkpointer.close()
    assert sorted(p.name for p in (tmp_path / "latest").iterdir()) == ["2", "3"]
    assert [p.name for p in (tmp_path / "best").iterdir()] == ["3"]
    reopened = Checkpointer(tmp_path / "latest", tmp_path / "best")
    assert reopened.latest_step() == 3 and reopened.latest_step("best") == 3
    restored = reopened.restore(abstract_train_state(smoke_config), step=2)
    assert restored.step == 2 and restored.meta == {"step": 2}
    reopened.close()


def test_missing_checkpoints_and_unknown_kinds_are_clear_errors(smoke_config, tmp_path):
    checkpointer = Checkpointer(tmp_path / "latest", tmp_path / "best")
    abstract = abstract_train_state(smoke_config)
    assert checkpointer.latest_step() is None and checkpointer.latest_step("best") is None
    with pytest.raises(FileNotFoundError, match="no best checkpoint"):
        checkpointer.restore(abstract, kind="best")
    with pytest.raises(FileNotFoundError, match="no latest checkpoint"):
        checkpointer.restore(abstract)
    with pytest.raises(ValueError, match="unknown checkpoint kind 'worst'"):
        checkpointer.latest_step("worst")
    checkpointer.close()
