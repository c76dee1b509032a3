"""benchmarks.accuracy: the scores both frameworks are measured by, and the guards that stop a
broken comparison (the Keras one needs the bench extra)."""

import dataclasses

import jax
import numpy as np
import pytest

from benchmarks import accuracy
from msunet.metrics import TRAIN_METRICS
from msunet.training import check_config

TINY = accuracy.Spec(size=32, base_filters=4, batch=4, max_steps=6, eval_every=3, num_train=16,
                     num_val=8, num_test=8)


def test_scores_pool_pixels_over_batches():
    masks = [np.array([[1, 1, 0, 0]]), np.array([[0, 0, 0, 1]])]
    probabilities = [np.array([[0.9, 0.2, 0.7, 0.1]]), np.array([[0.1, 0.1, 0.4, 0.5]])]
    # tp = 2 (pixels 0 and 7), fp = 1 (pixel 2), fn = 1 (pixel 1), tn = 4
    result = accuracy.scores(probabilities, masks)
    assert set(result) == {"loss", *TRAIN_METRICS}
    assert result["fg_iou"] == pytest.approx(2 / 4)
    assert result["dice"] == pytest.approx(4 / 6)
    assert result["accuracy"] == pytest.approx(6 / 8)
    assert result["mean_iou_2class"] == pytest.approx((2 / 4 + 4 / 6) / 2)
    p = np.array([0.9, 0.2, 0.7, 0.1, 0.1, 0.1, 0.4, 0.5])
    y = np.array([1, 1, 0, 0, 0, 0, 0, 1])
    bce = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert result["loss"] == pytest.approx(bce)


def test_a_flat_training_loss_stops_the_comparison():
    # Keras' train loss with learning rate 0 (the defect of the old IoU benchmark, seed 0).
    with pytest.raises(RuntimeError, match="training loss did not fall"):
        accuracy.check_loss_fell([0.792, 0.793, 0.792, 0.793, 0.792, 0.793], "keras-tf")
    accuracy.check_loss_fell([0.77, 0.75, 0.72, 0.70, 0.68, 0.65], "jax")


def test_the_spec_becomes_a_config_msunet_accepts():
    config = accuracy.data_config(TINY)
    check_config(config)
    assert (config.data.image_size, config.model.base_filters, config.model.name,
            config.optim.eps, config.optim.keras_epsilon) == (32, 4, "multiresunet", 1e-7, True)
    batch = next(accuracy.train_batches(TINY, 0))
    assert batch["image"].shape == (4, 32, 32, 1) and batch["image"].dtype == np.uint8
    assert [len(b["image"]) for b in accuracy.split_batches(TINY, "val")] == [4, 4]


def test_a_keras_optimiser_reset_that_zeroes_the_learning_rate_is_refused():
    pytest.importorskip("tensorflow", reason="the benchmarks need the bench extra: "
                        "pip install -e '.[bench]'")
    spec = dataclasses.replace(TINY, model="unet")  # the optimiser is the point; U-Net builds fast
    trainer = accuracy.KerasTrainer(spec, 0, None)
    assert trainer.learning_rate() == pytest.approx(spec.learning_rate)
    trainer.step(next(accuracy.train_batches(spec, 0)))
    for variable in trainer.model.optimizer.variables:  # what the old benchmark did per seed
        variable.assign(np.zeros(variable.shape, variable.dtype))
    assert trainer.learning_rate() == 0.0
    with pytest.raises(RuntimeError, match="learning rate is 0.0"):
        accuracy.train_to_convergence(spec, trainer, 0, "keras-tf")


class FlatTrainer:
    """A trainer whose validation loss never improves: every validation is a stall."""

    def __init__(self, learning_rate: float) -> None:
        self.rate, self.rates, self.steps = learning_rate, [], 0

    def learning_rate(self) -> float:
        return self.rate

    def set_learning_rate(self, value: float) -> None:
        self.rate = value
        self.rates.append(value)

    def step(self, batch):
        self.steps += 1
        return 1.0 / self.steps  # a falling training loss

    def predict(self, images):
        return np.full(images.shape, 0.3, np.float32)

    def snapshot(self):
        return self.steps

    def restore(self, weights):
        self.restored = weights


def test_a_stall_reduces_the_learning_rate_then_stops_training():
    spec = dataclasses.replace(TINY, max_steps=100, eval_every=2, patience=2, lr_factor=0.5,
                               lr_reductions=2)
    trainer = FlatTrainer(spec.learning_rate)
    result = accuracy.train_to_convergence(spec, trainer, 0, "fake")
    # the first validation sets the best; two stalls each halve the rate, the third stops
    assert trainer.rates == pytest.approx([5e-4, 2.5e-4])
    assert [p["learning_rate"] for p in result["curve"]] == pytest.approx(
        [1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4])
    assert result["stopped_early"] and result["steps"] == 14 == trainer.steps
    assert trainer.restored == 2  # the weights of the lowest validation loss (the first)


def test_a_reduction_that_does_not_take_is_refused():
    class Stuck(FlatTrainer):
        def set_learning_rate(self, value: float) -> None:
            pass

    spec = dataclasses.replace(TINY, max_steps=100, eval_every=2, patience=1, lr_reductions=1)
    with pytest.raises(RuntimeError, match="learning rate is 0.001, the spec's 0.0001"):
        accuracy.train_to_convergence(spec, Stuck(spec.learning_rate), 0, "fake")


def test_msunet_takes_a_new_learning_rate_without_recompiling():
    spec = dataclasses.replace(TINY, model="unet")
    trainer = accuracy.JaxTrainer(spec, 0, None)
    batches = accuracy.train_batches(spec, 0)
    trainer.step(next(batches))
    trainer.step(next(batches))  # from here on, the state comes out of the compiled step
    compiled = trainer._step._cache_size()
    trainer.set_learning_rate(0.0)
    assert trainer.learning_rate() == 0.0
    before = trainer.snapshot()
    trainer.step(next(batches))
    after = trainer.snapshot()
    for old, new in zip(jax.tree.leaves(before["params"]), jax.tree.leaves(after["params"]),
                        strict=True):
        np.testing.assert_array_equal(old, new)  # rate 0: the step is live, the params stay
    assert trainer._step._cache_size() == compiled
