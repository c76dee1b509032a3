"""Lesion masks for mammograms of any size and bit depth:
`python -m msunet.predict --workdir DIR --input FILE_OR_DIR --output DIR`.

Each image goes through the training preprocessing (`prepare_image`: breast crop, canonical side,
resize, CLAHE), the model runs on the whole image resized to `data.image_size` or, with
`eval.sliding_window`, on overlapping `data.patch_size` windows of that same image, blended with
Gaussian weights (the scale the model was trained at, patches included), optionally averaged
with its mirror image (`eval.tta_hflip`), and the probability map is mapped back onto the
original pixels (`restore_geometry`). Written per input: `<stem>_mask.png` (0/255, the
input's size), `<stem>_overlay.png` (lesion outline in red on the image) and, with
--probability, `<stem>_probability.png` (probability x 255).
"""

from __future__ import annotations

import functools
import json
import pathlib
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import cv2
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags, logging

from msunet import hostmem
from msunet.checkpointing import Checkpointer
from msunet.cli import parse_flags
from msunet.config import base_config
from msunet.data.cbis import read_dicom
from msunet.data.files import IMAGE_SUFFIXES, BadSampleError, read_image
from msunet.data.preprocess import Geometry, prepare_image, restore_geometry, to_uint8
from msunet.train import CONFIG_FILE, create_model, create_train_state

DICOM_SUFFIXES = (".dcm", ".dicom")
INPUT_SUFFIXES = IMAGE_SUFFIXES + DICOM_SUFFIXES


def load_run_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
    """The config a training run saved in `workdir`, on top of today's defaults (so fields added
    since the run, e.g. new `eval` options, have their default values)."""
    workdir = pathlib.Path(workdir)
    if not workdir.is_dir():
        raise FileNotFoundError(f"workdir {workdir} does not exist")
    path = workdir / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {workdir} is not a training workdir")
    config = base_config()
    config.update(json.loads(path.read_text()))
    return config


def load_variables(workdir: str | pathlib.Path, config: ml_collections.ConfigDict,
                   checkpoint: str = "best") -> tuple[dict[str, Any], int]:
    """The model variables ({'params', 'batch_stats'}) of a checkpoint of `workdir`, and its step.

    Raises FileNotFoundError when the workdir has no checkpoint of that kind.
    """
    state = create_train_state(config, jax.random.key(0))
    checkpointer = Checkpointer(workdir)
    try:
        restored = checkpointer.restore(state, kind=checkpoint)
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
    """A jitted (variables, float images (N, S, S, 1)) -> logits (N, S, S, 1), one per model."""
    model = create_model(ml_collections.ConfigDict(json.loads(model_json)))

    def logits(variables: dict[str, Any], images: jax.Array) -> jax.Array:
        out = model.apply(variables, images, train=False)
        if tta_hflip:
            mirrored = model.apply(variables, images[:, :, ::-1], train=False)[:, :, ::-1]
            out = mean_probability_logit(out, mirrored)
        return out

    return jax.jit(logits)


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
        inputs = jnp.asarray(images, jnp.float32) / 255.0  # as msunet.train.to_inputs
        return np.asarray(self._logits(self.variables, inputs), np.float32)[..., 0]

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """uint8 images (N, S, S[, 1]) -> lesion probabilities (N, S, S)."""
        return np.asarray(jax.nn.sigmoid(self.logits(images)))

    def __call__(self, image: np.ndarray, threshold: float | None = None) -> Prediction:
        """Predict one grey image of any size and bit depth, at its original size."""
        ev = self.config.eval
        if not ev.sliding_window:
            prepared, geometry = prepare_image(image, self.config.data)
            small = self.probabilities(prepared[None])[0]
        else:
            # Training's scale: the image prepared at data.image_size, tiled with the patches
            # the model was trained on (one window, the whole image, when it had none).
            prepared, geometry = prepare_image(image, self.config.data)
            window = self.config.data.patch_size or self.config.data.image_size
            small = sliding_window_probabilities(prepared, window, ev.window_overlap,
                                                 self.probabilities)
        probability = restore_geometry(small, geometry)
        threshold = ev.threshold if threshold is None else threshold
        return Prediction(probability, probability >= threshold, geometry)


def predict(variables: dict[str, Any], image: np.ndarray, config: ml_collections.ConfigDict,
            threshold: float | None = None) -> Prediction:
    """Predict one grey image (any size, uint8/uint16/float) with `variables` per `config`.

    For many images, build one `Predictor` and call it per image.
    """
    return Predictor(variables, config)(image, threshold)


def read_input(path: str | pathlib.Path) -> np.ndarray:
    """A PNG/JPEG/TIFF (any bit depth) or DICOM mammogram as a grey array.

    Raises BadSampleError naming the file for a non-image or unreadable file, and ImportError
    for DICOM without pydicom.
    """
    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    if suffix not in INPUT_SUFFIXES:
        raise BadSampleError(path, f"not an image file (expected one of "
                                   f"{', '.join(INPUT_SUFFIXES)})")
    if suffix in DICOM_SUFFIXES:
        try:
            return read_dicom(path)
        except ImportError as error:
            raise ImportError(f"{path}: reading DICOM needs pydicom (pip install pydicom)"
                              ) from error
    return read_image(path)


def list_inputs(path: str | pathlib.Path) -> list[pathlib.Path]:
    """`path` itself, or the image files directly inside the folder `path` (sorted)."""
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    if path.is_file():
        if path.suffix.lower() not in INPUT_SUFFIXES:
            raise BadSampleError(path, f"not an image file (expected one of "
                                       f"{', '.join(INPUT_SUFFIXES)})")
        return [path]
    found = sorted(child for child in path.iterdir()
                   if child.is_file() and child.suffix.lower() in INPUT_SUFFIXES)
    if not found:
        raise FileNotFoundError(f"no image files ({', '.join(INPUT_SUFFIXES)}) in {path}")
    return found


def overlay(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = (0, 0, 255),
            ) -> np.ndarray:
    """The image as 8-bit BGR with the outline of each predicted lesion drawn on it."""
    picture = cv2.cvtColor(to_uint8(np.asarray(image)), cv2.COLOR_GRAY2BGR)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(picture, contours, -1, color, max(1, round(max(mask.shape) / 400)))
    return picture


def _write_png(path: pathlib.Path, array: np.ndarray) -> pathlib.Path:
    if not cv2.imwrite(str(path), array):
        raise OSError(f"could not write {path}")
    return path


def save_prediction(prediction: Prediction, image: np.ndarray, output: str | pathlib.Path,
                    stem: str, probability: bool = False) -> dict[str, pathlib.Path]:
    """Write `<stem>_mask.png`, `<stem>_overlay.png` and optionally `<stem>_probability.png`."""
    output = pathlib.Path(output)
    output.mkdir(parents=True, exist_ok=True)
    written = {
        "mask": _write_png(output / f"{stem}_mask.png", prediction.mask.astype(np.uint8) * 255),
        "overlay": _write_png(output / f"{stem}_overlay.png", overlay(image, prediction.mask)),
    }
    if probability:
        written["probability"] = _write_png(
            output / f"{stem}_probability.png",
            np.round(prediction.probability * 255).astype(np.uint8))
    return written


def _parse(argv: list[str]) -> flags.FlagValues:
    """The command line, in its own FlagValues: msunet.train's flags stay separate."""
    values = flags.FlagValues()
    flags.DEFINE_string("workdir", None, "A training workdir (config.json and checkpoints).",
                        flag_values=values)
    flags.DEFINE_string("input", None, "A mammogram file, or a folder of them.",
                        flag_values=values)
    flags.DEFINE_string("output", None, "Folder for the masks and overlays.", flag_values=values)
    flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "Which checkpoint to use.",
                      flag_values=values)
    flags.DEFINE_boolean("probability", False, "Also write the probability map.",
                         flag_values=values)
    flags.DEFINE_boolean("tta_hflip", None, "Override eval.tta_hflip.", flag_values=values)
    flags.DEFINE_boolean("sliding_window", None, "Override eval.sliding_window.",
                         flag_values=values)
    flags.mark_flags_as_required(["workdir", "input", "output"], flag_values=values)
    return parse_flags(values, argv)


def main(argv: list[str]) -> None:
    """Predict every input and write its mask and overlay; exits non-zero on a bad input."""
    args = _parse(argv)
    logging.set_verbosity(logging.WARNING)
    try:
        hostmem.keep_freed_memory_unless_disabled()
        inputs = list_inputs(args.input)
        config = load_run_config(args.workdir)
        for name in ("tta_hflip", "sliding_window"):
            if args[name].value is not None:
                config.eval[name] = args[name].value
        variables, step = load_variables(args.workdir, config, args.checkpoint)
        predictor = Predictor(variables, config)
        print(f"{config.model.name} from the {args.checkpoint} checkpoint (step {step}); "
              f"{len(inputs)} image(s)", flush=True)
        for path in inputs:
            image = read_input(path)
            prediction = predictor(image)
            written = save_prediction(prediction, image, args.output, path.stem,
                                      args.probability)
            share = prediction.mask.mean()
            print(f"{path} -> {written['mask']}: {int(prediction.mask.sum())} lesion pixels "
                  f"({share:.2%} of {image.shape[1]}x{image.shape[0]})", flush=True)
    except (ValueError, FileNotFoundError, ImportError, OSError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main(sys.argv)
