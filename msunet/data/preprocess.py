"""Deterministic preprocessing: resize to the model's resolution and CLAHE contrast enhancement.

Everything here is a pure function of the record and the config, so it can run once and be
cached; random augmentation lives in `msunet.data.augment`.
"""

from __future__ import annotations

from typing import Any

import cv2
import grain
import numpy as np


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Scale an integer or float image to uint8, keeping the range of 16-bit scans."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image.astype(np.float32) * (255.0 / 65535.0)).round().astype(np.uint8)
    image = image.astype(np.float32)
    low, high = float(image.min()), float(image.max())
    if not np.isfinite([low, high]).all():
        raise ValueError("image contains NaN or infinite values")
    scale = 255.0 / (high - low) if high > low else 0.0
    return ((image - low) * scale).round().astype(np.uint8)


def clahe(image: np.ndarray, clip_limit: float, tile_grid: int) -> np.ndarray:
    """Contrast Limited Adaptive Histogram Equalisation of a uint8 grey image.

    A new cv2.CLAHE object per call: a shared one gives run-to-run differences across grain
    reader threads and cannot be pickled for worker processes (and costs well under 1 us).
    """
    return cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tile_grid, tile_grid)).apply(image)


def resize_pair(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize image (area/linear) and mask (area, then threshold at 0.5) to size x size."""
    if image.shape[:2] == (size, size):
        return image, mask
    shrinking = image.shape[0] > size or image.shape[1] > size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    image = cv2.resize(image, (size, size), interpolation=interpolation)
    mask = cv2.resize(mask.astype(np.float32), (size, size), interpolation=interpolation)
    return image, (mask >= 0.5).astype(np.uint8)


class Preprocess(grain.transforms.Map):
    """Record -> {'image': uint8 (S, S, 1), 'mask': uint8 (S, S, 1)} at the model's resolution."""

    def __init__(self, image_size: int, clahe_clip_limit: float, clahe_tile_grid: int) -> None:
        self.image_size = image_size
        self.clahe_clip_limit = clahe_clip_limit
        self.clahe_tile_grid = clahe_tile_grid

    def map(self, element: dict[str, Any]) -> dict[str, np.ndarray]:
        image = to_uint8(np.asarray(element["image"]))
        mask = (np.asarray(element["mask"]) > 0).astype(np.uint8)
        image, mask = resize_pair(image, mask, self.image_size)
        if self.clahe_clip_limit > 0:
            image = clahe(image, self.clahe_clip_limit, self.clahe_tile_grid)
        return {"image": image[..., None], "mask": mask[..., None]}
