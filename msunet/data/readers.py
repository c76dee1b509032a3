"""Reading the mammograms a user hands to `msunet.predict`: any grey PNG/JPEG/TIFF (8 or 16 bit)
or DICOM file, or a folder of them; a bad file is a BadSampleError naming it."""

from __future__ import annotations

import pathlib

import numpy as np

from msunet.data.cbis import read_dicom
from msunet.data.files import IMAGE_SUFFIXES, BadSampleError, read_image

DICOM_SUFFIXES = (".dcm", ".dicom")
INPUT_SUFFIXES = IMAGE_SUFFIXES + DICOM_SUFFIXES


def _check_suffix(path: pathlib.Path) -> None:
    if path.suffix.lower() not in INPUT_SUFFIXES:
        raise BadSampleError(path, f"not an image file (expected one of "
                                   f"{', '.join(INPUT_SUFFIXES)})")


def read_input(path: str | pathlib.Path) -> np.ndarray:
    """A PNG/JPEG/TIFF (any bit depth) or DICOM mammogram as a grey array.

    Raises BadSampleError naming the file for a non-image or unreadable file, and ImportError
    for DICOM without pydicom.
    """
    path = pathlib.Path(path)
    _check_suffix(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
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
        _check_suffix(path)
        return [path]
    found = sorted(child for child in path.iterdir()
                   if child.is_file() and child.suffix.lower() in INPUT_SUFFIXES)
    if not found:
        raise FileNotFoundError(f"no image files ({', '.join(INPUT_SUFFIXES)}) in {path}")
    return found
