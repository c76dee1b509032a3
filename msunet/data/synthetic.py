"""A built-in synthetic mammogram set, so that every command runs with no download.

Each image is drawn deterministically from (seed, index): a breast-shaped region against one
side with multi-scale fibroglandular texture, a darker film background with burned-in label
blobs (never part of the mask), and zero to two lesions — lobulated or spiculated masses of
varied size, and calcification-like clusters of small bright specks. The mask is exactly the
union of the lesion regions that were painted. About a quarter of the images are lesion-free.
"""

from __future__ import annotations

import zlib
from typing import Any

import cv2
import ml_collections
import numpy as np

from msunet.data.splits import SPLITS


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Noise on a `cells`x`cells` grid upsampled to `size` (one octave of texture), in [-1, 1]."""
    coarse = rng.uniform(-1.0, 1.0, (cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)


def _breast_region(rng: np.random.Generator, size: int, left: bool) -> np.ndarray:
    """A half-ellipse against the chest wall, as float32 {0,1}."""
    region = np.zeros((size, size), np.uint8)
    center_x = 0 if left else size - 1
    center_y = int(size * rng.uniform(0.42, 0.58))
    axes = (int(size * rng.uniform(0.55, 0.85)), int(size * rng.uniform(0.38, 0.5)))
    cv2.ellipse(region, (center_x, center_y), axes, 0, 0, 360, 1, -1)
    return region.astype(np.float32)


def _lesion_outline(rng: np.random.Generator, center: tuple[float, float], radius: float,
                    spiculated: bool) -> np.ndarray:
    """Polygon of a mass: a lobulated radius profile, with narrow spikes if spiculated."""
    theta = np.linspace(0.0, 2 * np.pi, 180, endpoint=False)
    profile = np.ones_like(theta)
    for k in range(2, 6):
        profile += rng.uniform(0.0, 0.25 / k * 2) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    if spiculated:
        spikes = rng.integers(6, 14)
        sharpness = rng.uniform(8, 30)
        profile += rng.uniform(0.4, 0.9) * np.maximum(
            0.0, np.cos(spikes * theta + rng.uniform(0, 2 * np.pi))) ** sharpness
    profile = np.clip(profile, 0.35, None) * radius
    xs = center[0] + profile * np.cos(theta)
    ys = center[1] + profile * np.sin(theta)
    return np.stack([xs, ys], axis=1).round().astype(np.int32)


def _pick_inside(rng: np.random.Generator, region: np.ndarray, margin: int) -> tuple[int, int]:
    """A random (x, y) at least `margin` pixels inside the breast region."""
    kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
    inner = cv2.erode(region.astype(np.uint8), kernel)
    ys, xs = np.nonzero(inner if inner.any() else region)
    i = rng.integers(len(xs))
    return int(xs[i]), int(ys[i])


def synthetic_mammogram(seed: int, index: int, size: int = 256) -> dict[str, np.ndarray]:
    """Draw one synthetic mammogram: `image` uint8 (size, size) and exact `mask` uint8 {0,1}."""
    rng = np.random.default_rng([seed, index])
    left = bool(rng.integers(2))
    breast = _breast_region(rng, size, left)
    # Fade towards the skin line so the breast edge is soft, as on film.
    fade = cv2.distanceTransform(breast.astype(np.uint8), cv2.DIST_L2, 5)
    fade = np.clip(fade / (0.12 * size), 0.0, 1.0)

    texture = sum(
        weight * _smooth_noise(rng, size, cells)
        for weight, cells in ((0.5, 6), (0.3, 16), (0.2, max(size // 6, 8)))
    )
    density = rng.uniform(0.25, 0.6)
    tissue = 70 + 90 * density + 45 * texture
    image = 18 + rng.normal(0.0, 2.0, (size, size)) + breast * fade * (tissue - 18)

    mask = np.zeros((size, size), np.uint8)
    kind_draw = rng.uniform()
    n_masses = 0 if kind_draw < 0.25 else int(rng.integers(1, 3)) if kind_draw < 0.8 else 0
    has_calcs = kind_draw >= 0.8 or (n_masses and rng.uniform() < 0.15)
    for _ in range(n_masses):
        radius = size * rng.uniform(0.03, 0.11)
        cx, cy = _pick_inside(rng, breast, int(radius * 1.5))
        polygon = _lesion_outline(rng, (cx, cy), radius, spiculated=rng.uniform() < 0.4)
        lesion = np.zeros_like(mask)
        cv2.fillPoly(lesion, [polygon], 1)
        mask |= lesion
        soft = cv2.GaussianBlur(lesion.astype(np.float32), (0, 0), max(radius * 0.08, 0.6))
        image += soft * (rng.uniform(35, 80) + 12 * _smooth_noise(rng, size, 24))
    if has_calcs:
        spread = size * rng.uniform(0.025, 0.05)
        cx, cy = _pick_inside(rng, breast, int(spread * 2))
        count = int(rng.integers(6, 20))
        points = np.stack([cx + rng.normal(0, spread, count), cy + rng.normal(0, spread, count)], 1)
        points = np.clip(points, 0, size - 1).round().astype(np.int32)
        specks = np.zeros((size, size), np.float32)
        for x, y in points:
            cv2.circle(specks, (int(x), int(y)), max(1, size // 256), 1.0, -1)
        image += cv2.GaussianBlur(specks, (0, 0), 0.6) * rng.uniform(70, 120)
        cluster = np.zeros_like(mask)
        cv2.fillPoly(cluster, [cv2.convexHull(points)], 1)
        margin = max(2, size // 64)
        mask |= cv2.dilate(cluster, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8))

    if rng.uniform() < 0.6:  # burned-in film label in a background corner, never a lesion
        w, h = int(size * rng.uniform(0.1, 0.2)), int(size * rng.uniform(0.05, 0.1))
        x0 = size - w - int(size * 0.03) if left else int(size * 0.03)
        y0 = int(size * 0.03) if rng.uniform() < 0.5 else size - h - int(size * 0.03)
        image[y0:y0 + h, x0:x0 + w] = rng.uniform(200, 250)
        for _ in range(int(rng.integers(3, 7))):  # dark "characters" on the label
            cx, cy = x0 + rng.integers(1, max(w - 1, 2)), y0 + rng.integers(1, max(h - 1, 2))
            cv2.rectangle(image, (int(cx), int(cy)), (int(cx) + 1, int(cy) + 2), 40.0, -1)
        mask[y0:y0 + h, x0:x0 + w] = 0

    return {"image": np.clip(image, 0, 255).astype(np.uint8), "mask": mask}


class SyntheticMammograms:
    """A grain random-access source of `num_images` synthetic mammograms of one split.

    Splits draw from disjoint seeds, so train, val and test never share an image. The images
    are drawn at the model's size but not yet CLAHE'd: the pipeline preprocesses them.
    """

    preprocessed = False

    def __init__(self, num_images: int, image_size: int = 256, seed: int = 0,
                 split: str = "train") -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        if num_images < 1:
            raise ValueError(f"num_images must be positive, got {num_images}")
        self.num_images = num_images
        self.image_size = image_size
        self.split = split
        self._seed = zlib.crc32(f"msunet-synthetic/{seed}/{split}".encode())

    @classmethod
    def from_config(cls, data: ml_collections.ConfigDict, split: str) -> SyntheticMammograms:
        """Split `split` at `data.image_size`, `data.num_<split>` images drawn from `data.seed`."""
        sizes = {"train": data.num_train, "val": data.num_val, "test": data.num_test}
        if split not in sizes:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return cls(sizes[split], data.image_size, seed=data.seed, split=split)

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        return synthetic_mammogram(self._seed, index, self.image_size) | self.record(index)

    def record(self, index: int) -> dict[str, Any]:
        """Image `index`'s name (a `synthetic://<split>/<index>` path) without its pixels."""
        return {"path": f"synthetic://{self.split}/{index}", "case": ""}

    def __repr__(self) -> str:
        return (f"SyntheticMammograms(num_images={self.num_images}, "
                f"image_size={self.image_size}, split={self.split!r})")
