"""msunet.inference: a trained model on mammograms of any size and bit depth (whole image or
sliding window, with or without flip TTA), mapped back onto the original pixels."""

import cv2
import jax
import numpy as np
import pytest

from msunet.data import synthetic_mammogram
from msunet.data.readers import read_input
from msunet.export import save_prediction
from msunet.inference import (
    Predictor,
    gaussian_weights,
    load_variables,
    mean_probability_logit,
    predict,
    sliding_window_probabilities,
    window_starts,
)
from msunet.workdir import Workdir


@pytest.fixture(scope="module")
def trained(smoke_run):
    """The smoke run's config, best variables and best step."""
    config = Workdir(smoke_run).load_config()
    variables, step = load_variables(smoke_run, config)
    return config, variables, step


def scan(height=96, width=80, index=0):
    """A synthetic grey scan of a size the model was not trained at (it must be >= 64)."""
    return np.ascontiguousarray(synthetic_mammogram(3, index, size=128)["image"][:height, :width])


# --- loading a run -----------------------------------------------------------------------------

def test_load_variables_of_each_checkpoint(smoke_run, trained):
    config, variables, step = trained
    assert set(variables) == {"params", "batch_stats"} and step in (4, 8)
    assert load_variables(smoke_run, config, "latest")[1] == 8


def test_a_workdir_without_checkpoints_is_a_clear_error(trained, tmp_path):
    with pytest.raises(FileNotFoundError, match="no best checkpoint"):
        load_variables(tmp_path, trained[0])


# --- the Predictor -----------------------------------------------------------------------------

def test_a_prediction_has_the_images_size(trained):
    config, variables, _ = trained
    image = scan()
    predictor = Predictor(variables, config)
    prediction = predictor(image)
    assert prediction.probability.shape == prediction.mask.shape == image.shape
    assert prediction.probability.dtype == np.float32 and prediction.mask.dtype == bool
    assert 0.0 <= prediction.probability.min() <= prediction.probability.max() <= 1.0
    np.testing.assert_array_equal(prediction.mask,
                                  prediction.probability >= config.eval.threshold)
    assert prediction.geometry.original_shape == image.shape
    strict = predictor(image, threshold=0.99)
    assert not (strict.mask & ~prediction.mask).any(), "a higher threshold marks fewer pixels"
    np.testing.assert_array_equal(predict(variables, image, config).probability,
                                  prediction.probability)


def test_many_images_run_in_padded_chunks_of_the_eval_batch(trained):
    config, variables, _ = trained
    size = config.train.eval_batch_size
    images = np.stack([synthetic_mammogram(0, i, 64)["image"] for i in range(size + 2)])
    predictor = Predictor(variables, config)
    logits = predictor.logits(images)
    assert logits.shape == (size + 2, 64, 64) and logits.dtype == np.float32
    np.testing.assert_allclose(logits[:size], predictor.logits(images[:size]), atol=1e-5)
    tail = np.concatenate([images[size:], images[:size - 2]])  # same rows, same batch shape
    np.testing.assert_allclose(logits[size:], predictor.logits(tail)[:2], atol=1e-5)
    np.testing.assert_allclose(predictor.probabilities(images[:size]),
                               1 / (1 + np.exp(-logits[:size].astype(np.float64))),
                               rtol=1e-5, atol=1e-6)


def test_sliding_window_with_tta_predicts_at_the_images_size(trained):
    config = trained[0].copy_and_resolve_references()
    config.data.patch_size = config.data.image_size // 2
    config.eval.sliding_window = True
    config.eval.tta_hflip = True
    image = scan(70, 100, index=1)
    prediction = Predictor(trained[1], config)(image)
    assert prediction.probability.shape == image.shape
    assert np.isfinite(prediction.probability).all()
    assert 0.0 <= prediction.probability.min() <= prediction.probability.max() <= 1.0


def test_predict_real_mammogram_keeps_its_size(trained, sample_image, tmp_path):
    config, variables, _ = trained
    config = config.copy_and_resolve_references()
    image = read_input(sample_image)
    prediction = predict(variables, image, config)
    assert prediction.mask.shape == image.shape and prediction.mask.dtype == bool
    assert prediction.probability.shape == image.shape
    assert 0.0 <= prediction.probability.min() <= prediction.probability.max() <= 1.0

    # The same scan at 16 bits gives the same probabilities (a map that varies, so an empty
    # prediction could not pass by accident).
    assert prediction.probability.std() > 0
    deep = tmp_path / "deep.png"
    cv2.imwrite(str(deep), image.astype(np.uint16) * 257)
    assert read_input(deep).dtype == np.uint16
    np.testing.assert_allclose(predict(variables, read_input(deep), config).probability,
                               prediction.probability, atol=1e-6)

    # Trained on whole images: the sliding window is one window at training scale, the same
    # prediction as the whole image.
    config.eval.sliding_window = True
    np.testing.assert_allclose(Predictor(variables, config)(image).probability,
                               prediction.probability, atol=1e-6)

    # Trained on patches (the README's recipe, scaled down): tiles of the patch size.
    config.data.patch_size = config.data.image_size // 2
    config.eval.tta_hflip = True
    tiled = Predictor(variables, config)(image)
    assert tiled.mask.shape == image.shape

    written = save_prediction(tiled, image, tmp_path / "out", "scan", probability=True)
    for path in written.values():
        assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape[:2] == image.shape


# --- sliding windows and flip TTA --------------------------------------------------------------

def test_sliding_window_blending_reproduces_a_position_independent_map():
    """Tiles of a per-pixel function, blended, give back that function exactly."""
    image = np.random.default_rng(0).integers(0, 256, (100, 130), dtype=np.uint8)
    calls = []

    def probabilities(tiles):
        calls.append(len(tiles))
        return tiles.astype(np.float32) / 255.0

    blended = sliding_window_probabilities(image, 32, 0.5, probabilities)
    np.testing.assert_allclose(blended, image / 255.0, atol=1e-6)
    assert calls == [len(window_starts(100, 32, 0.5)) * len(window_starts(130, 32, 0.5))]
    assert window_starts(100, 32, 0.5) == [0, 16, 32, 48, 64, 68]
    assert window_starts(32, 32, 0.5) == [0], "an image the window's size is one window"
    with pytest.raises(ValueError, match="overlap"):
        window_starts(100, 32, 1.0)
    with pytest.raises(ValueError, match="larger than the image side"):
        window_starts(20, 32, 0.5)


def test_gaussian_weights_count_the_window_centre_most():
    weights = gaussian_weights(32)
    assert weights.shape == (32, 32) and weights.dtype == np.float32
    assert weights.max() == pytest.approx(1.0) and weights.min() > 0
    assert weights[0, 0] == weights.min(), "corners count least"
    np.testing.assert_allclose(weights, weights.T)
    np.testing.assert_allclose(weights, weights[::-1, ::-1], rtol=1e-6)


def test_tta_mean_probability_logit():
    first, second = np.array([-30.0, -2.0, 0.5, 40.0]), np.array([-31.0, 3.0, 0.5, 45.0])
    combined = np.asarray(jax.nn.sigmoid(mean_probability_logit(first, second)))
    expected = (np.asarray(jax.nn.sigmoid(first)) + np.asarray(jax.nn.sigmoid(second))) / 2
    np.testing.assert_allclose(combined, expected, rtol=1e-5)
    assert np.isfinite(np.asarray(mean_probability_logit(first, second))).all()
