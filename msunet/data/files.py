"""What the file-based sources share: reading images and masks, filling outlines, bad samples.

A source is a list of `Entry`s (an image file, its mask files, its case and metadata) and reads
one entry per `source[i]`. Problems that a directory listing can show (missing files) are found
when the source is built; problems that need decoding (unreadable, truncated, wrong size) are
raised by `source[i]` as a `BadSampleError` naming the file.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import ml_collections
import numpy as np
from absl import logging

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
BAD_SAMPLE_POLICIES = ("error", "skip")


class BadSampleError(ValueError):
    """An input file that cannot be used; the message starts with the file's path."""

    def __init__(self, path: str | pathlib.Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return type(self), (self.path, self.reason)  # picklable, to cross from worker processes


@dataclasses.dataclass(frozen=True)
class Entry:
    """One image of a dataset: its file, its mask files (none = lesion-free), case and metadata."""

    image: pathlib.Path
    masks: tuple[pathlib.Path, ...]
    case: str
    meta: dict[str, Any] = dataclasses.field(default_factory=dict, hash=False)


def read_image(path: pathlib.Path) -> np.ndarray:
    """Decode a grey image keeping its bit depth (uint8 or uint16); colour is converted to grey.

    Raises BadSampleError for a missing, unreadable or truncated file (OpenCV decodes a
    truncated JPEG silently, so JPEGs must end with their end-of-image marker).
    """
    if not path.is_file():
        raise BadSampleError(path, "file not found")
    data = np.fromfile(path, np.uint8)
    if not data.size:
        raise BadSampleError(path, "empty file")
    if path.suffix.lower() in (".jpg", ".jpeg") and data[-2:].tobytes() != b"\xff\xd9":
        raise BadSampleError(path, "truncated JPEG (no end-of-image marker)")
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as error:  # corrupt headers can trip OpenCV's internal assertions
        raise BadSampleError(path, f"unreadable image ({error.err})") from error
    if image is None or image.size == 0:
        raise BadSampleError(path, "unreadable or truncated image")
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY if image.shape[2] == 4
                             else cv2.COLOR_BGR2GRAY)
    if image.dtype not in (np.uint8, np.uint16):
        raise BadSampleError(path, f"unsupported pixel type {image.dtype}")
    return image


def binarize(mask: np.ndarray) -> np.ndarray:
    """uint8 {0,1}: 0/1 masks as they are, 8/16-bit masks thresholded at half their range."""
    if mask.max(initial=0) <= 1:
        return (mask > 0).astype(np.uint8)
    half = 128 if mask.dtype == np.uint8 else np.iinfo(mask.dtype).max // 2 + 1
    return (mask >= half).astype(np.uint8)


def fill_outline(mask: np.ndarray) -> np.ndarray:
    """Lesion outline (or already filled region) -> filled uint8 {0,1} region.

    Threshold at half range, close 1-pixel gaps of the outline (3x3 closing), flood-fill the
    outside from the border; the lesion is the thresholded pixels plus every enclosed pixel.
    A filled region encloses nothing new, so filling it again returns it unchanged.
    """
    binary = binarize(mask)
    closed = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    padded = np.pad(closed, 1)  # the outside is connected through the padding ring
    flood_mask = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), np.uint8)
    cv2.floodFill(padded, flood_mask, (0, 0), 2)
    enclosed = padded[1:-1, 1:-1] == 0
    return binary | enclosed.astype(np.uint8)


def fill_failed(mask: np.ndarray, filled: np.ndarray) -> bool:
    """Whether `fill_outline` left a thin outline as it was: an outline with a gap wider than
    the closing kernel encloses nothing, so the "filled" lesion would be a 1-px ring.

    Thin = almost nothing survives a 3x3 erosion (a filled region keeps its inside); failed =
    the filled area is barely larger than the outline (a closed ring encloses several times
    its own area, from a radius of a few pixels on). Outlines under 40 px are not judged.
    """
    outline = binarize(mask)
    drawn = int(outline.sum())
    if drawn < 40:
        return False
    inside = int(cv2.erode(outline, np.ones((3, 3), np.uint8)).sum())
    return inside < 0.2 * drawn and int(filled.sum()) < 1.5 * drawn


def read_mask_union(paths: Sequence[pathlib.Path], shape: tuple[int, ...],
                    fill: bool = True) -> np.ndarray:
    """The union of the filled masks in `paths` (all zeros for none); sizes must match `shape`.

    An outline that does not close (see `fill_failed`) is a BadSampleError naming the mask.
    """
    union = np.zeros(shape[:2], np.uint8)
    for path in paths:
        mask = read_image(path)
        if mask.shape != union.shape:
            raise BadSampleError(path, f"mask is {mask.shape[0]}x{mask.shape[1]} but its image "
                                       f"is {union.shape[0]}x{union.shape[1]}")
        region = fill_outline(mask) if fill else binarize(mask)
        if fill and fill_failed(mask, region):
            raise BadSampleError(path, "the lesion outline does not close (a gap wider than "
                                       "the 3x3 closing), so it cannot be filled")
        union |= region
    return union


def find_with_suffix(path: pathlib.Path) -> pathlib.Path | None:
    """`path` if it exists, else the same stem with another suffix (.jpg listed, .png on disk)."""
    if path.is_file():
        return path
    for suffix in IMAGE_SUFFIXES:
        candidate = path.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def warn_skipped(name: str, skipped: Sequence[str]) -> None:
    """One warning listing every skipped sample and their count."""
    if skipped:
        logging.warning("%s: skipped %d bad sample(s) (data.on_bad_sample='skip'):\n  %s",
                        name, len(skipped), "\n  ".join(skipped))


class FileSource:
    """A grain random-access source over `Entry`s; subclasses build the list of entries.

    `on_bad_sample="error"` raises at once for entries whose files are missing; "skip" drops
    them and lists them in `skipped`. Reading errors surface in `__getitem__` as BadSampleError.
    """

    fill_masks = True  # masks are outlines or filled regions; filling is harmless for both
    preprocessed = False  # full-size files: the cache (or pipeline) preprocesses them

    def __init__(self, entries: Sequence[Entry], problems: Sequence[BadSampleError], name: str,
                 on_bad_sample: str = "error") -> None:
        if on_bad_sample not in BAD_SAMPLE_POLICIES:
            raise ValueError(f"on_bad_sample must be one of {BAD_SAMPLE_POLICIES}, got "
                             f"{on_bad_sample!r}")
        if problems and on_bad_sample == "error":
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise BadSampleError(problems[0].path, problems[0].reason + more)
        bad = {problem.path for problem in problems}
        self.entries = [entry for entry in entries
                        if not bad.intersection(map(str, (entry.image, *entry.masks)))]
        self.skipped = [str(problem) for problem in problems]
        self.name = name  # the skipped files are reported by whoever reads the whole source
        if not self.entries:
            raise FileNotFoundError(f"{name}: no usable images found")

    @classmethod
    def from_config(cls, data: ml_collections.ConfigDict) -> FileSource:
        """The dataset at `data.root` (sources with more settings override this)."""
        if not data.root:
            raise ValueError(f"data.source={data.source!r} needs data.root, the dataset folder")
        return cls(data.root, on_bad_sample=data.on_bad_sample)

    def __len__(self) -> int:
        return len(self.entries)

    def record(self, index: int) -> dict[str, Any]:
        """Path, case and metadata of entry `index`, without decoding it."""
        entry = self.entries[index]
        return {"path": str(entry.image), "case": entry.case, **entry.meta}

    def __getitem__(self, index: int) -> dict[str, Any]:
        entry = self.entries[index]
        image = self.read_image(entry.image)
        mask = self.read_masks(entry, image.shape)
        return {"image": image, "mask": mask, "path": str(entry.image), "case": entry.case,
                **entry.meta}

    def read_image(self, path: pathlib.Path) -> np.ndarray:
        """Decode one image file (DICOM sources override this)."""
        return read_image(path)

    def read_masks(self, entry: Entry, shape: tuple[int, ...]) -> np.ndarray:
        """The segmentation target of `entry`: the union of its masks."""
        return read_mask_union(entry.masks, shape, fill=self.fill_masks)

    def fingerprint_items(self) -> list[tuple[str, int, int]]:
        """(path, size, mtime) of every file read, so a changed file changes the cache key."""
        items = []
        for entry in self.entries:
            for path in (entry.image, *entry.masks):
                stat = path.stat()
                items.append((str(path), stat.st_size, stat.st_mtime_ns))
        return items

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images)"


def check_files(entries: Sequence[Entry], where: Callable[[Entry], str] = lambda entry: ""
                ) -> list[BadSampleError]:
    """A BadSampleError for every image or mask file of `entries` that does not exist."""
    problems = []
    for entry in entries:
        if not entry.image.is_file():
            problems.append(BadSampleError(entry.image, f"image file not found{where(entry)}"))
        problems.extend(BadSampleError(mask, f"mask file of {entry.image.name} not found"
                                             f"{where(entry)}")
                        for mask in entry.masks if not mask.is_file())
    return problems
