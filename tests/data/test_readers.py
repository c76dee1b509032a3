"""Reading what a user hands to `msunet.predict`: images of any bit depth, DICOM, folders; a bad
file is named."""

import sys

import cv2
import numpy as np
import pytest

from msunet.data import BadSampleError, list_inputs, read_input
from msunet.data.files import IMAGE_SUFFIXES
from msunet.data.readers import DICOM_SUFFIXES, INPUT_SUFFIXES
from tests.data.conftest import write_dicom


def test_bad_inputs_are_named(tmp_path):
    garbage = tmp_path / "scan.png"
    garbage.write_text("not a picture")
    with pytest.raises(BadSampleError, match="scan.png: unreadable"):
        read_input(garbage)
    with pytest.raises(BadSampleError, match="notes.txt: not an image file"):
        read_input(tmp_path / "notes.txt")


def test_images_keep_their_bit_depth(tmp_path):
    grey = (np.arange(64 * 80).reshape(64, 80) % 256).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "scan.png"), grey)
    cv2.imwrite(str(tmp_path / "deep.tif"), grey.astype(np.uint16) * 257)
    np.testing.assert_array_equal(read_input(tmp_path / "scan.png"), grey)
    deep = read_input(tmp_path / "deep.tif")
    assert deep.dtype == np.uint16
    np.testing.assert_array_equal(deep, grey.astype(np.uint16) * 257)


def test_dicom_inputs_are_read(tmp_path):
    pixels = (np.arange(40 * 30).reshape(40, 30) * 37).astype(np.uint16)
    write_dicom(tmp_path / "scan.dcm", pixels)
    read = read_input(tmp_path / "scan.dcm")
    assert read.dtype == np.uint16
    np.testing.assert_array_equal(read, pixels)


def test_dicom_without_pydicom_names_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(ImportError, match="scan.dcm: reading DICOM needs pydicom"):
        read_input(tmp_path / "scan.dcm")


def test_list_inputs_takes_a_file_or_the_images_of_a_folder(tmp_path):
    assert INPUT_SUFFIXES == IMAGE_SUFFIXES + DICOM_SUFFIXES and ".dcm" in DICOM_SUFFIXES
    for name in ("b.png", "a.DCM", "c.tiff"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("not listed")
    (tmp_path / "sub.png").mkdir()  # a folder, whatever its name
    assert list_inputs(tmp_path) == [tmp_path / "a.DCM", tmp_path / "b.png", tmp_path / "c.tiff"]
    assert list_inputs(tmp_path / "b.png") == [tmp_path / "b.png"]
    with pytest.raises(BadSampleError, match="notes.txt: not an image file"):
        list_inputs(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError, match="missing.png does not exist"):
        list_inputs(tmp_path / "missing.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files"):
        list_inputs(tmp_path / "empty")
