"""Fuzzed inputs: every malformed file gives the documented error, nothing else escapes.

The documented errors: `BadSampleError` (a ValueError whose message starts with the file's
path) for a file that cannot be used, `ValueError`/`FileNotFoundError` naming the spreadsheet or
folder for a dataset that cannot be read.
"""

import pathlib

import cv2
import numpy as np
import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msunet.data.files import BadSampleError, read_image, read_mask_union
from msunet.data.miniddsm import MiniDDSM
from msunet.data.preprocess import Preprocess

FUZZ = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
SUFFIXES = st.sampled_from([".png", ".jpg", ".jpeg", ".tif"])


def valid_image_bytes(suffix: str) -> bytes:
    rng = np.random.default_rng(0)
    ok, encoded = cv2.imencode(suffix, rng.integers(0, 256, (48, 40), dtype=np.uint8))
    assert ok
    return encoded.tobytes()


def read_or_documented_error(path: pathlib.Path) -> np.ndarray | None:
    """read_image's result, or None when it raised the documented error naming the file."""
    try:
        image = read_image(path)
    except BadSampleError as error:
        assert str(error).startswith(str(path))
        return None
    assert image.dtype in (np.uint8, np.uint16) and image.ndim == 2 and image.size > 0
    return image


@FUZZ
@given(data=st.binary(max_size=2048), suffix=SUFFIXES)
def test_random_bytes(tmp_path, data, suffix):
    path = tmp_path / f"random{suffix}"
    path.write_bytes(data)
    read_or_documented_error(path)


@FUZZ
@given(suffix=SUFFIXES, fraction=st.floats(0.0, 0.99))
def test_truncated_files(tmp_path, suffix, fraction):
    data = valid_image_bytes(suffix)
    path = tmp_path / f"truncated{suffix}"
    path.write_bytes(data[: int(len(data) * fraction)])
    image = read_or_documented_error(path)
    if suffix in (".jpg", ".jpeg"):
        assert image is None, "a JPEG without its end marker is refused"


def test_zero_size_file_is_refused(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(BadSampleError, match="empty.png"):
        read_image(path)


def test_nan_filled_float_tiff_is_refused(tmp_path):
    path = tmp_path / "nan.tif"
    assert cv2.imwrite(str(path), np.full((16, 16), np.nan, np.float32))
    with pytest.raises(BadSampleError, match="nan.tif"):
        read_image(path)


@FUZZ
@given(height=st.integers(1, 80), width=st.integers(1, 80))
def test_tiny_and_odd_sized_images_through_preprocessing(height, width):
    image = np.random.default_rng(height * 100 + width).integers(0, 256, (height, width),
                                                                 dtype=np.uint8)
    preprocess = Preprocess(64, clahe_clip_limit=2.0, clahe_tile_grid=8)
    try:
        out = preprocess.map({"image": image, "mask": np.zeros_like(image), "path": "x.png"})
    except BadSampleError as error:
        assert str(error).startswith("x.png") and "smaller than" in str(error)
        assert height < 64 or width < 64
        return
    assert out["image"].shape == out["mask"].shape == (64, 64, 1)


@FUZZ
@given(height=st.integers(1, 64), width=st.integers(1, 64))
def test_masks_of_another_size_are_reported(tmp_path, height, width):
    mask_path = tmp_path / "mask.png"
    assert cv2.imwrite(str(mask_path), np.zeros((height, width), np.uint8))
    shape = (32, 32)
    if (height, width) == shape:
        assert read_mask_union([mask_path], shape).shape == shape
        return
    with pytest.raises(BadSampleError, match="mask.png: mask is"):
        read_mask_union([mask_path], shape)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(columns=st.lists(st.text(st.characters(codec="ascii", categories=["L", "N"]),
                                min_size=1, max_size=12), min_size=1, max_size=6, unique=True))
def test_spreadsheets_with_wrong_columns(tmp_path_factory, columns):
    root = tmp_path_factory.mktemp("miniddsm")
    case = root / "Benign" / "0001"
    case.mkdir(parents=True)
    assert cv2.imwrite(str(case / "C_0001_1.LEFT_CC.png"), np.zeros((80, 64), np.uint8))
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Data"
    sheet.append(columns)
    sheet.append(["Benign\\0001\\C_0001_1.LEFT_CC.png"] * len(columns))
    workbook.save(root / "DataWMask.xlsx")
    required = {"fullPath", "Status", "Tumour_Contour"}
    if required <= set(columns):
        return  # a well-formed sheet; other tests cover it
    with pytest.raises(ValueError, match="DataWMask.xlsx: missing column"):
        MiniDDSM(root)
