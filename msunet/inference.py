"""Inference: a trained model applied to mammograms of any size, as a library.

    from msunet.inference import Predictor, load_variables
    config = Workdir("runs/default").load_config()
    predictor = Predictor(load_variables("runs/default", config)[0], config)
    prediction = predictor(image)  # .probability, .mask at the image's own size

Each image goes through the training preprocessing (`prepare_image`: breast crop, canonical side,
resize, CLAHE), the model runs on the whole image resized to `data.image_size` or, with
`eval.sliding_window`, on overlapping `data.patch_size` windows of that same image, blended with
Gaussian weights (the scale the model was trained at, patches included), optionally averaged
with its mirror image (`eval.tta_hflip`), and the probability map is mapped back onto the
original pixels (`restore_geometry`). Writing PNGs is `msunet.export`; the command line is
`msunet.predict`.
"""

from __future__ import annotations

import functools
import json
import pathlib
from collections.abc import Callable
from typing import Any, NamedTuple

import cv2
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from msunet import hostmem
from msunet.data.preprocess import Geometry, model_inputs, prepare_image, restore_geometry
from msunet.models.layers import folded_batch_norm
from msunet.state import abstract_train_state, create_model
from msunet.workdir import Workdir


def load_variables(workdir: str | pathlib.Path, config: ml_collections.ConfigDict,
                   checkpoint: str = "best") -> tuple[dict[str, Any], int]:
    """The model variables ({'params', 'batch_stats'}) of a checkpoint of `workdir`, and its step.

    Raises FileNotFoundError when the workdir has no checkpoint of that kind. The state is
    restored into its abstract shapes: nothing is initialised (or compiled) only to be replaced.
    """
    checkpointer = Workdir(workdir).checkpointer()
    try:
        restored = checkpointer.restore(abstract_train_state(config), kind=checkpoint)
    finally:
        checkpointer.close()
    return {"params": restored.state.params,
            "batch_stats": restored.state.batch_stats}, restored.step


def mean_probability_logit(first: jax.Array, second: jax.Array) -> jax.Array:
    """logit((sigmoid(first) + sigmoid(second)) / 2), computed stably in log space."""
    positive = jnp.logaddexp(jax.nn.log_sigmoid(first), jax.nn.log_sigmoid(second))
    negative = jnp.logaddexp(jax.nn.log_sigmoid(-first), jax.nn.log_sigmoid(-second))
    return positive - negative


@functools.lru_cache(maxsize=8)
def _logits_fn(model_json: str, tta_hflip: bool) -> Callable[..., jax.Array]:
    """A jitted (variables, float images (N, S, S, 1)) -> logits (N, S, S, 1), one per model,
    with every convolution's BatchNorm folded into it (`folded_batch_norm`), compiled ahead of
    its first run (`hostmem.CompiledAhead`)."""
    model = create_model(ml_collections.ConfigDict(json.loads(model_json)))

    def logits(variables: dict[str, Any], images: jax.Array) -> jax.Array:
        with folded_batch_norm():
            out = model.apply(variables, images, train=False)
            if tta_hflip:
                mirrored = model.apply(variables, images[:, :, ::-1], train=False)[:, :, ::-1]
                out = mean_probability_logit(out, mirrored)
        return out

    return hostmem.CompiledAhead(jax.jit(logits))


def window_starts(length: int, window: int, overlap: float) -> list[int]:
    """Offsets of windows covering `length` pixels with the given overlap; the last one ends
    exactly at the edge."""
    if not 0 <= overlap < 1:
        raise ValueError(f"eval.window_overlap must be in [0, 1), got {overlap}")
    if window > length:
        raise ValueError(f"window {window} is larger than the image side {length}")
    stride = max(1, round(window * (1 - overlap)))
    starts = list(range(0, length - window + 1, stride))
    return starts if starts[-1] == length - window else [*starts, length - window]


def gaussian_weights(size: int) -> np.ndarray:
    """(size, size) blending weights, 1 at the centre, sigma = size / 8 (nnU-Net's choice):
    window borders, where the model sees least context, count least."""
    kernel = cv2.getGaussianKernel(size, size / 8)
    weights = kernel @ kernel.T
    return (weights / weights.max()).astype(np.float32)


def sliding_window_probabilities(image: np.ndarray, window: int, overlap: float,
                                 probabilities: Callable[[np.ndarray], np.ndarray]
                                 ) -> np.ndarray:
    """Probability map of a (H, W) image from overlapping `window`-sized tiles.

    `probabilities` maps uint8 tiles (N, window, window) to floats of the same shape; each pixel
    gets the Gaussian-weighted mean of the tiles covering it.
    """
    corners = [(y, x) for y in window_starts(image.shape[0], window, overlap)
               for x in window_starts(image.shape[1], window, overlap)]
    tiles = probabilities(np.stack([image[y:y + window, x:x + window] for y, x in corners]))
    weights = gaussian_weights(window)
    total = np.zeros(image.shape, np.float32)
    norm = np.zeros(image.shape, np.float32)
    for (y, x), tile in zip(corners, tiles, strict=True):
        total[y:y + window, x:x + window] += tile * weights
        norm[y:y + window, x:x + window] += weights
    return total / norm


class Prediction(NamedTuple):
    """A prediction at the input's original size."""

    probability: np.ndarray  # float32 (H, W) lesion probability
    mask: np.ndarray  # bool (H, W): probability >= threshold
    geometry: Geometry  # how the model input was cut from the image


class Predictor:
    """A model and its config, compiled once and applied to any number of images."""

    def __init__(self, variables: dict[str, Any], config: ml_collections.ConfigDict) -> None:
        self.variables = variables
        self.config = config
        self._logits = _logits_fn(config.model.to_json(), bool(config.eval.tta_hflip))

    def logits(self, images: np.ndarray) -> np.ndarray:
        """uint8 images (N, S, S) or (N, S, S, 1) -> float32 logits (N, S, S).

        With `eval.tta_hflip`, the logit of the mean of the image's and its mirror's
        probabilities. More than `train.eval_batch_size` images run in padded chunks of that size.
        """
        images = np.asarray(images).reshape(len(images), *np.shape(images)[1:3], 1)
        size = self.config.train.eval_batch_size
        if len(images) <= size:
            return self._run(images)
        chunks = []
        for start in range(0, len(images), size):
            chunk = images[start:start + size]
            padded = np.concatenate([chunk, np.zeros((size - len(chunk),) + chunk.shape[1:],
                                                     chunk.dtype)])
            chunks.append(self._run(padded)[:len(chunk)])
        return np.concatenate(chunks)

    def _run(self, images: np.ndarray) -> np.ndarray:
        inputs = model_inputs(jnp.asarray(images))
        return np.asarray(self._logits(self.variables, inputs), np.float32)[..., 0]

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """uint8 images (N, S, S[, 1]) -> lesion probabilities (N, S, S)."""
        return np.asarray(jax.nn.sigmoid(self.logits(images)))

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, Geometry]:
        """The training preprocessing of one grey image (any size and bit depth): the uint8
        model-resolution image and how to map back (`prepare_image`)."""
        return prepare_image(image, self.config.data)

    def model_probabilities(self, prepared: list[np.ndarray]) -> list[np.ndarray]:
        """Lesion probabilities at model resolution of prepared images: the whole images in
        one batched model call, or each tiled by the sliding window (`eval.sliding_window`)."""
        if not prepared:
            return []
        if not self.config.eval.sliding_window:
            return list(self.probabilities(np.stack(prepared)))
        # Training's scale: the image prepared at data.image_size, tiled with the patches the
        # model was trained on (one window, the whole image, when it had none).
        window = self.config.data.patch_size or self.config.data.image_size
        return [sliding_window_probabilities(image, window, self.config.eval.window_overlap,
                                             self.probabilities) for image in prepared]

    def restore(self, probability: np.ndarray, geometry: Geometry,
                threshold: float | None = None) -> Prediction:
        """A model-resolution probability map back at the original image's pixels."""
        probability = restore_geometry(probability, geometry)
        threshold = self.config.eval.threshold if threshold is None else threshold
        return Prediction(probability, probability >= threshold, geometry)

    def __call__(self, image: np.ndarray, threshold: float | None = None) -> Prediction:
        """Predict one grey image of any size and bit depth, at its original size."""
        prepared, geometry = self.prepare(image)
        return self.restore(self.model_probabilities([prepared])[0], geometry, threshold)


def predict(variables: dict[str, Any], image: np.ndarray, config: ml_collections.ConfigDict,
            threshold: float | None = None) -> Prediction:
    """Predict one grey image (any size, uint8/uint16/float) with `variables` per `config`.

    For many images, build one `Predictor` and call it per image.
    """
    return Predictor(variables, config)(image, threshold)
