"""CBIS-DDSM (TCIA): full-field DICOM mammograms with per-abnormality ROI masks.

The four case-description CSVs (mass/calc x train/test) have one row per abnormality; rows of
the same image are merged and the target is the union of their ROI masks. The CSV's DICOM paths
often do not match the downloaded tree (TCIA renames the series folders), so a path that does
not exist is looked up by its first component, the per-image folder. Each ROI folder holds a
lesion crop and a full-size mask: they are told apart by size, and a mask whose size differs
from its image is reported, never resized. Needs pydicom (`pip install msunet[cbis]`).
"""

from __future__ import annotations

import csv
import pathlib
from typing import Any

import numpy as np

from msunet.data.files import BadSampleError, Entry, FileSource, binarize, check_files

CSV_PATTERN = "*case_description*.csv"
IMAGE_COLUMN = "image file path"
ROI_COLUMNS = ("ROI mask file path", "cropped image file path")


def _pydicom() -> Any:
    try:
        import pydicom
    except ImportError as error:
        raise ImportError("reading CBIS-DDSM needs pydicom: pip install 'msunet[cbis]'") from error
    return pydicom


def read_dicom(path: pathlib.Path) -> np.ndarray:
    """Pixels of a grey DICOM as uint8/uint16 with bright = dense (MONOCHROME1 is inverted)."""
    pydicom = _pydicom()
    if not path.is_file():
        raise BadSampleError(path, "file not found")
    try:
        dataset = pydicom.dcmread(path)
        pixels = dataset.pixel_array
    except Exception as error:  # pydicom raises many types for damaged files
        raise BadSampleError(path, f"unreadable or truncated DICOM ({error})") from error
    if pixels.ndim != 2:
        raise BadSampleError(path, f"expected one grey frame, got pixel shape {pixels.shape}")
    if pixels.dtype not in (np.uint8, np.uint16):
        pixels = np.clip(pixels, 0, 65535).astype(np.uint16)
    if dataset.get("PhotometricInterpretation") == "MONOCHROME1":
        pixels = np.iinfo(pixels.dtype).max - pixels
    return pixels


def dicom_shape(path: pathlib.Path) -> tuple[int, int]:
    """(rows, columns) from the DICOM header, without decoding the pixels."""
    try:
        header = _pydicom().dcmread(path, stop_before_pixels=True)
        return int(header.Rows), int(header.Columns)
    except Exception as error:
        raise BadSampleError(path, f"unreadable DICOM header ({error})") from error


class _Locator:
    """Finds a CSV path on disk: as written, or among the .dcm files of its top folder."""

    def __init__(self, root: pathlib.Path) -> None:
        self.bases = [root, *(path for path in root.iterdir() if path.is_dir())]

    def __call__(self, listed: str) -> list[pathlib.Path]:
        parts = listed.strip().replace("\\", "/").split("/")
        for base in self.bases:
            if (base / pathlib.Path(*parts)).is_file():
                return [base / pathlib.Path(*parts)]
        for base in self.bases:
            if (base / parts[0]).is_dir():
                return sorted((base / parts[0]).rglob("*.dcm"))
        return []


class CBISDDSM(FileSource):
    """CBIS-DDSM as a grain source: `source[i]` -> image (uint16), union of its ROI masks,
    path, case (patient id), side, view, pathology and abnormality types.
    """

    fill_masks = False  # CBIS ROI masks are filled regions already

    def __init__(self, root: str | pathlib.Path, on_bad_sample: str = "error") -> None:
        self.root = pathlib.Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"CBIS-DDSM root {str(self.root)!r} is not a directory")
        tables = sorted({*self.root.glob(CSV_PATTERN), *self.root.glob(f"*/{CSV_PATTERN}")})
        if not tables:
            raise FileNotFoundError(f"{self.root} is not a CBIS-DDSM root: no {CSV_PATTERN} "
                                    "(mass/calc case descriptions) in it or its subfolders")
        locate = _Locator(self.root)
        rows: dict[str, list[tuple[str, dict[str, str]]]] = {}
        for table in tables:
            with table.open(newline="") as file:
                for number, row in enumerate(csv.DictReader(file), start=2):
                    row = {key.strip(): (value or "").strip() for key, value in row.items()}
                    if not row.get(IMAGE_COLUMN):
                        raise ValueError(f"{table}: row {number} has no {IMAGE_COLUMN!r}")
                    rows.setdefault(row[IMAGE_COLUMN], []).append((f"{table.name} row {number}",
                                                                   row))
        entries, problems = [], []
        for listed, image_rows in rows.items():
            where, first = image_rows[0]
            found = locate(listed)
            image = found[0] if len(found) == 1 else self.root / listed
            if len(found) > 1:
                problems.append(BadSampleError(image.parent, f"{len(found)} DICOM files where "
                                               f"one image was expected ({where})"))
            groups = []
            for roi_where, row in image_rows:
                candidates = sorted({path for column in ROI_COLUMNS if row.get(column)
                                     for path in locate(row[column])})
                if not candidates:
                    problems.append(BadSampleError(self.root / row[ROI_COLUMNS[0]],
                                                   f"ROI mask not found ({roi_where})"))
                groups.append([str(path) for path in candidates])
            meta = {"side": first.get("left or right breast", ""),
                    "view": first.get("image view", ""),
                    "pathology": sorted({row.get("pathology", "") for _, row in image_rows}),
                    "abnormality_types": sorted({row.get("abnormality type", "")
                                                 for _, row in image_rows}),
                    "listed_in": where, "roi_groups": groups}
            masks = tuple(pathlib.Path(path) for group in groups for path in group)
            entries.append(Entry(image, masks, first.get("patient_id", listed), meta))
        entries.sort(key=lambda entry: str(entry.image))
        problems += check_files(entries, lambda entry: f" ({entry.meta['listed_in']})")
        super().__init__(entries, problems, f"CBIS-DDSM {self.root}", on_bad_sample)

    def read_image(self, path: pathlib.Path) -> np.ndarray:
        return read_dicom(path)

    def read_masks(self, entry: Entry, shape: tuple[int, ...]) -> np.ndarray:
        """Union over abnormalities; in each ROI folder the file of the image's size is the mask."""
        union = np.zeros(shape[:2], np.uint8)
        for group in entry.meta["roi_groups"]:
            sizes = {pathlib.Path(path): dicom_shape(pathlib.Path(path)) for path in group}
            masks = [path for path, size in sizes.items() if size == tuple(shape[:2])]
            if not masks:
                largest = max(sizes, key=lambda path: sizes[path][0] * sizes[path][1])
                rows, cols = sizes[largest]
                raise BadSampleError(largest, f"ROI mask is {rows}x{cols} but its image "
                                     f"{entry.image} is {shape[0]}x{shape[1]}")
            union |= binarize(read_dicom(masks[0]))
        return union
