"""Writing predictions: the mask, an overlay of the lesion outlines on the image, and the
probability map, as PNGs at the input's own size."""

from __future__ import annotations

import pathlib

import cv2
import numpy as np

from msunet.data.preprocess import to_uint8
from msunet.inference import Prediction


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
