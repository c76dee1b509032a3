"""Random augmentation for the training split, as one grain RandomMap.

Rotation and zoom share one affine warp (image bilinear, mask nearest-neighbour so it stays
binary); flips and contrast/brightness follow. Randomness comes only from the generator grain
passes in, so batches are the same for any number of reader threads or workers.
"""

from __future__ import annotations

import cv2
import grain
import numpy as np


class Augment(grain.transforms.RandomMap):
    """Flip, rotate, zoom and adjust contrast/brightness an {'image','mask'} pair together.

    Each transform fires with its own probability; ranges are (low, high) tuples.
    """

    def __init__(self, *, hflip_prob: float = 0.5, vflip_prob: float = 0.5,
                 rotation_prob: float = 0.5, rotation_degrees: float = 15.0,
                 zoom_prob: float = 0.5, zoom_range: tuple[float, float] = (0.9, 1.1),
                 contrast_prob: float = 0.5, contrast_range: tuple[float, float] = (0.8, 1.2),
                 brightness_range: tuple[float, float] = (-0.08, 0.08)) -> None:
        self.hflip_prob = hflip_prob
        self.vflip_prob = vflip_prob
        self.rotation_prob = rotation_prob
        self.rotation_degrees = rotation_degrees
        self.zoom_prob = zoom_prob
        self.zoom_range = tuple(zoom_range)
        self.contrast_prob = contrast_prob
        self.contrast_range = tuple(contrast_range)
        self.brightness_range = tuple(brightness_range)

    def random_map(self, element: dict[str, np.ndarray],
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
        image, mask = element["image"][..., 0], element["mask"][..., 0]
        draws = rng.uniform(size=5)  # one draw per transform keeps the stream layout fixed
        angle = rng.uniform(-self.rotation_degrees, self.rotation_degrees)
        scale = rng.uniform(*self.zoom_range)
        contrast = rng.uniform(*self.contrast_range)
        brightness = rng.uniform(*self.brightness_range)

        angle = angle if draws[0] < self.rotation_prob else 0.0
        scale = scale if draws[1] < self.zoom_prob else 1.0
        if angle or scale != 1.0:
            height, width = image.shape
            matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle, scale)
            image = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            mask = cv2.warpAffine(mask, matrix, (width, height), flags=cv2.INTER_NEAREST,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if draws[2] < self.hflip_prob:
            image, mask = image[:, ::-1], mask[:, ::-1]
        if draws[3] < self.vflip_prob:
            image, mask = image[::-1], mask[::-1]
        if draws[4] < self.contrast_prob:
            mean = image.mean()
            adjusted = (image.astype(np.float32) - mean) * contrast + mean + 255.0 * brightness
            image = np.clip(adjusted, 0, 255).round().astype(np.uint8)
        return {"image": np.ascontiguousarray(image)[..., None],
                "mask": np.ascontiguousarray(mask)[..., None]}
