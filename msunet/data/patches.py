"""Random training patches from large images, with foreground oversampling.

At 512-1024 px a whole mammogram per example is too large a batch for most devices, and lesions
cover ~1-3 % of it; training on patches where a configurable share is centred on lesion pixels
keeps batches small and positives frequent. Evaluation still runs on whole images.
"""

from __future__ import annotations

import grain
import numpy as np


class RandomPatch(grain.transforms.RandomMap):
    """Crop a `size` x `size` patch from an {'image','mask'} pair (H, W, 1 arrays).

    With probability `foreground_fraction`, and when the mask has lesion pixels, the patch is
    centred (up to the image border) on a uniformly drawn lesion pixel; otherwise its corner is
    uniform over the image.
    """

    def __init__(self, size: int, foreground_fraction: float = 0.5) -> None:
        if not 0.0 <= foreground_fraction <= 1.0:
            raise ValueError(f"foreground_fraction must be in [0, 1], got {foreground_fraction}")
        self.size = size
        self.foreground_fraction = foreground_fraction

    def random_map(self, element: dict[str, np.ndarray],
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
        image, mask = element["image"], element["mask"]
        height, width = image.shape[:2]
        if height < self.size or width < self.size:
            raise ValueError(f"patch size {self.size} exceeds the image size {height}x{width}")
        centred = rng.uniform() < self.foreground_fraction
        lesion = np.argwhere(mask[..., 0] > 0) if centred else np.empty((0, 2))
        if len(lesion):
            cy, cx = lesion[rng.integers(len(lesion))]
            top = int(np.clip(cy - self.size // 2, 0, height - self.size))
            left = int(np.clip(cx - self.size // 2, 0, width - self.size))
        else:
            top = int(rng.integers(height - self.size + 1))
            left = int(rng.integers(width - self.size + 1))
        window = (slice(top, top + self.size), slice(left, left + self.size))
        return {"image": image[window], "mask": mask[window]}
