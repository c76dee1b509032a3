"""Deterministic preprocessing: breast crop, canonical side, resize and CLAHE.

Everything here is a pure function of the record and the config, so it can run once and be
cached; random augmentation lives in `msunet.data.augment`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import cv2
import grain
import ml_collections
import numpy as np

from msunet.data.files import BadSampleError

STORED_BITS = (10, 12, 14, 16)  # detector depths that 16-bit mammogram files hold


def stored_bits(image: np.ndarray) -> int:
    """The smallest common detector depth (10, 12, 14 or 16 bits) that holds the image's values.

    Most 16-bit mammograms (DICOM, PNG exports such as Mini-DDSM's) store 12 or 14 bits: scaling
    them by 65535 would leave a few dozen grey levels.
    """
    peak = int(image.max(initial=0))
    return next((bits for bits in STORED_BITS if peak < 2**bits), 16)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Scale an integer or float image to uint8.

    uint16 images are scaled by the full range of their stored bit depth (`stored_bits`), so a
    12-bit scan spans 0-255 as an 8-bit one does and the darkest/brightest levels keep their
    meaning; float images by their own min and max.
    """
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        scale = 255.0 / (2 ** stored_bits(image) - 1)
        return (image.astype(np.float32) * scale).round().astype(np.uint8)
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


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to size x size: area averaging when shrinking, bilinear when growing."""
    if image.shape[:2] == (size, size):
        return image
    shrinking = image.shape[0] > size or image.shape[1] > size
    return cv2.resize(image, (size, size),
                      interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resize a {0,1} mask like its image, then threshold at 0.5 so it stays binary."""
    if mask.shape[:2] == (size, size):
        return mask
    return (resize_image(mask.astype(np.float32), size) >= 0.5).astype(np.uint8)


def breast_box(image: np.ndarray) -> tuple[tuple[int, int, int, int], bool]:
    """The breast's bounding box (y0, y1, x0, x1) in a uint8 image, and whether the breast
    lies against the right edge (more tissue in the box's right half).

    Threshold just above the film background (15 % of the way from the 10th percentile to
    Otsu's level, on a 256-px copy), cut a 3 % frame so film borders do not join the breast,
    keep the largest component and pad its box by 4 % of the longer side (a box touching the
    frame runs to the image edge). Label blobs and scanner borders fall outside. An image with
    no clear foreground keeps its full extent.
    """
    height, width = image.shape
    scale = min(1.0, 256 / max(height, width))
    small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                       interpolation=cv2.INTER_AREA)
    small = cv2.medianBlur(small, 5)
    otsu, _ = cv2.threshold(small, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    floor = float(np.percentile(small, 10))
    binary = (small > floor + 0.15 * (otsu - floor)).astype(np.uint8)
    binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    rows, cols = binary.shape
    frame_y, frame_x = max(1, round(0.03 * rows)), max(1, round(0.03 * cols))
    binary[:frame_y], binary[-frame_y:], binary[:, :frame_x], binary[:, -frame_x:] = 0, 0, 0, 0
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if count < 2 or stats[1:, cv2.CC_STAT_AREA].max() < 0.02 * rows * cols:
        return (0, height, 0, width), False
    label = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = stats[label, :4]
    breast = labels[y:y + h, x:x + w] == label
    right_heavy = breast[:, w // 2:].sum() > breast[:, :(w + 1) // 2].sum()
    x0, y0 = (0 if x <= frame_x else x), (0 if y <= frame_y else y)
    x1 = cols if x + w >= cols - frame_x else x + w
    y1 = rows if y + h >= rows - frame_y else y + h
    pad = round(0.04 * max(height, width))
    box = (max(0, round(y0 / scale) - pad), min(height, round(y1 / scale) + pad),
           max(0, round(x0 / scale) - pad), min(width, round(x1 / scale) + pad))
    return box, bool(right_heavy)


def grow_box(box: tuple[int, int, int, int], size: int, shape: tuple[int, int],
             mask: np.ndarray | None = None) -> tuple[int, int, int, int]:
    """`box` grown to hold every lesion pixel of `mask` and at least `size` pixels per side.

    The breast crop must never cut a lesion out of its own target, and a crop smaller than the
    model's input would be upsampled; both grow the box within the image (whose sides are at
    least `size`).
    """
    y0, y1, x0, x1 = box
    if mask is not None and np.any(mask):
        rows, cols = np.nonzero(np.asarray(mask))
        y0, y1 = min(y0, int(rows.min())), max(y1, int(rows.max()) + 1)
        x0, x1 = min(x0, int(cols.min())), max(x1, int(cols.max()) + 1)

    def at_least(start: int, stop: int, limit: int) -> tuple[int, int]:
        missing = size - (stop - start)
        if missing <= 0:
            return start, stop
        start = min(max(0, start - missing // 2), limit - size)
        return start, start + size

    return (*at_least(y0, y1, shape[0]), *at_least(x0, x1, shape[1]))


def model_inputs(images: Any) -> Any:
    """uint8 images in [0, 255] -> the float32 [0, 1] inputs every model is trained on; numpy
    or jax arrays (the one place this scaling is written)."""
    return images.astype(np.float32) / 255.0


class Preprocess(grain.transforms.Map):
    """Record -> {'image': uint8 (S, S, 1), 'mask': uint8 (S, S, 1)} at the model's resolution.

    Breast crop (optional), mirroring to `canonical_side` ("left", "right" or "" for none),
    resize, CLAHE. Images smaller than S on either side are rejected, not upsampled.
    """

    def __init__(self, image_size: int, clahe_clip_limit: float, clahe_tile_grid: int,
                 crop_breast: bool = True, canonical_side: str = "left") -> None:
        if canonical_side not in ("left", "right", ""):
            raise ValueError(f"canonical_side must be 'left', 'right' or '', got "
                             f"{canonical_side!r}")
        self.image_size = image_size
        self.clahe_clip_limit = clahe_clip_limit
        self.clahe_tile_grid = clahe_tile_grid
        self.crop_breast = crop_breast
        self.canonical_side = canonical_side

    @classmethod
    def from_config(cls, data: ml_collections.ConfigDict) -> Preprocess:
        """The preprocessing the `data` config section asks for."""
        return cls(data.image_size, data.clahe_clip_limit, data.clahe_tile_grid,
                   data.crop_breast, data.canonical_side)

    def prepare(self, image: np.ndarray, mask: np.ndarray | None = None, path: str = "",
                ) -> tuple[np.ndarray, np.ndarray | None, Geometry]:
        """uint8 (S, S) image, its (S, S) mask (if given) and the Geometry to undo the crop."""
        image = to_uint8(np.asarray(image))
        height, width = image.shape[:2]
        size = self.image_size
        if height < size or width < size:
            raise BadSampleError(path or "image", f"image is {height}x{width}, smaller than "
                                 f"the model's {size}x{size} input")
        box, right_heavy = (0, height, 0, width), False
        if self.crop_breast or self.canonical_side:
            found, right_heavy = breast_box(image)
            if self.crop_breast:
                box = grow_box(found, size, (height, width), mask)
        flipped = bool(self.canonical_side) and right_heavy == (self.canonical_side == "left")
        y0, y1, x0, x1 = box
        image = image[y0:y1, x0:x1]
        if mask is not None:
            mask = (np.asarray(mask)[y0:y1, x0:x1] > 0).astype(np.uint8)
        if flipped:
            image = image[:, ::-1]
            mask = None if mask is None else mask[:, ::-1]
        image = resize_image(np.ascontiguousarray(image), size)
        if mask is not None:
            mask = resize_mask(np.ascontiguousarray(mask), size)
        if self.clahe_clip_limit > 0:
            image = clahe(np.ascontiguousarray(image), self.clahe_clip_limit,
                          self.clahe_tile_grid)
        return np.ascontiguousarray(image), mask, Geometry((height, width), box, flipped)

    def map(self, element: dict[str, Any]) -> dict[str, np.ndarray]:
        path = str(element.get("path", ""))
        try:
            image, mask, _ = self.prepare(element["image"], element["mask"], path)
        except BadSampleError:
            raise
        except Exception as error:  # say which file, also from inside a worker process
            raise RuntimeError(f"{path}: preprocessing failed: {error!r}") from error
        return {"image": image[..., None], "mask": np.ascontiguousarray(mask)[..., None]}


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Where a model-resolution image came from, to map predictions back to the original.

    original_shape: (height, width) of the image as read.
    box: (y0, y1, x0, x1) region of the original that was kept (the whole image when not cropped).
    flipped: whether the kept region was mirrored left-right before resizing.
    """

    original_shape: tuple[int, int]
    box: tuple[int, int, int, int]
    flipped: bool = False


def prepare_image(image: np.ndarray,
                  data: ml_collections.ConfigDict) -> tuple[np.ndarray, Geometry]:
    """The training preprocessing of one grey image: uint8 (S, S) model input and its Geometry."""
    prepared, _, geometry = Preprocess.from_config(data).prepare(image)
    return prepared, geometry


def restore_geometry(values: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Map a model-resolution float map (S, S) back onto the original image (zeros outside)."""
    y0, y1, x0, x1 = geometry.box
    region = cv2.resize(values.astype(np.float32), (x1 - x0, y1 - y0),
                        interpolation=cv2.INTER_LINEAR)
    if geometry.flipped:
        region = region[:, ::-1]
    restored = np.zeros(geometry.original_shape, np.float32)
    restored[y0:y1, x0:x1] = region
    return restored
