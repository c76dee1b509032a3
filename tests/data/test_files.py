"""What the file-based sources share: reading images (every malformed file gives the documented
error, nothing else escapes), filling lesion outlines, masks, and the bad-sample policy.

The documented error for a file that cannot be used is `BadSampleError`, a ValueError whose
message starts with the file's path.
"""

import pathlib

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from msunet.data.files import (
    BadSampleError,
    FileSource,
    binarize,
    fill_outline,
    find_with_suffix,
    read_image,
    read_mask_union,
)
from tests.conftest import SAMPLES
from tests.data.conftest import FUZZ, iou, needs_samples

SUFFIXES = st.sampled_from([".png", ".jpg", ".jpeg", ".tif"])


# --- reading images, fuzzed --------------------------------------------------------------------

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


def test_images_keep_their_bit_depth_and_colour_becomes_grey(tmp_path):
    grey = (np.arange(30 * 40).reshape(30, 40) % 256).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "deep.png"), grey.astype(np.uint16) * 257)
    deep = read_image(tmp_path / "deep.png")
    assert deep.dtype == np.uint16
    np.testing.assert_array_equal(deep, grey.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "colour.png"), np.stack([grey] * 3, axis=-1))
    np.testing.assert_array_equal(read_image(tmp_path / "colour.png"), grey)
    with pytest.raises(BadSampleError, match="missing.png: file not found"):
        read_image(tmp_path / "missing.png")


# --- masks -------------------------------------------------------------------------------------

def test_binarize_thresholds_at_half_the_range():
    np.testing.assert_array_equal(binarize(np.array([[0, 1]], np.uint8)), [[0, 1]])
    np.testing.assert_array_equal(binarize(np.array([[0, 127, 128, 255]], np.uint8)),
                                  [[0, 0, 1, 1]])
    np.testing.assert_array_equal(binarize(np.array([[32767, 32768]], np.uint16)), [[0, 1]])


def test_fill_outline_closes_gaps_and_fills_the_interior():
    outline = np.zeros((60, 60), np.uint8)
    cv2.circle(outline, (30, 30), 20, 255, 1)
    outline[10, 28:33] = 0  # a gap in the outline, 1 px wide after JPEG-like thresholding
    filled = fill_outline(outline)
    disk = np.zeros_like(outline)
    cv2.circle(disk, (30, 30), 20, 1, -1)
    assert iou(filled, disk) > 0.97
    assert filled[0, 0] == 0 and filled[30, 30] == 1
    np.testing.assert_array_equal(fill_outline(filled), filled)
    np.testing.assert_array_equal(fill_outline(np.zeros((8, 8), np.uint8)), 0)


def test_an_outline_with_a_wide_gap_is_reported_not_used_as_a_ring(tmp_path):
    outline = np.zeros((60, 60), np.uint8)
    cv2.circle(outline, (30, 30), 20, 255, 1)
    closed = tmp_path / "closed_Mask.png"
    cv2.imwrite(str(closed), outline)
    assert read_mask_union([closed], outline.shape).sum() > 1000  # filled: ~pi 20^2
    outline[5:20, 20:41] = 0  # a gap of ~20 px at the top
    open_ring = tmp_path / "open_Mask.png"
    cv2.imwrite(str(open_ring), outline)
    with pytest.raises(BadSampleError, match="open_Mask.png: the lesion outline does not close"):
        read_mask_union([open_ring], outline.shape)
    disk = np.zeros((60, 60), np.uint8)
    cv2.circle(disk, (30, 30), 20, 255, -1)
    solid = tmp_path / "solid_Mask.png"
    cv2.imwrite(str(solid), disk)
    assert read_mask_union([solid], disk.shape).sum() == (disk > 0).sum()


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


@needs_samples
def test_filling_the_original_outline_jpegs_gives_the_shipped_masks():
    originals = sorted((SAMPLES / "_original_contour_masks").rglob("*.jpg"))
    assert len(originals) == 25
    for path in originals:
        outline = read_image(path)
        assert binarize(outline).mean() < 0.002, "the originals are thin outlines"
        shipped = binarize(read_image(SAMPLES / path.relative_to(
            SAMPLES / "_original_contour_masks").with_suffix(".png")))
        filled = fill_outline(outline)
        small = cv2.resize(filled.astype(np.float32), shipped.shape[::-1],
                           interpolation=cv2.INTER_AREA) >= 0.5
        assert iou(small, shipped) >= 0.95, path
        np.testing.assert_array_equal(fill_outline(filled * 255), filled)  # idempotent
        np.testing.assert_array_equal(fill_outline(shipped), shipped)


# --- file lookup and the bad-sample policy -----------------------------------------------------

def test_a_listed_file_is_found_under_another_image_suffix(tmp_path):
    (tmp_path / "scan.png").write_bytes(b"x")
    assert find_with_suffix(tmp_path / "scan.jpg") == tmp_path / "scan.png"
    assert find_with_suffix(tmp_path / "scan.png") == tmp_path / "scan.png"
    assert find_with_suffix(tmp_path / "other.jpg") is None


def test_file_source_checks_its_policy_and_needs_an_image():
    with pytest.raises(ValueError, match="on_bad_sample must be one of"):
        FileSource([], [], "nothing", on_bad_sample="ignore")
    with pytest.raises(FileNotFoundError, match="nothing: no usable images found"):
        FileSource([], [], "nothing")
