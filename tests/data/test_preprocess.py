"""Deterministic preprocessing: bit depths, breast crop, canonical side, resize, CLAHE, and the
geometry that maps predictions back onto the original image."""

import cv2
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from msunet.data import BadSampleError, Preprocess, SyntheticMammograms, synthetic_mammogram
from msunet.data.preprocess import (
    breast_box,
    grow_box,
    model_inputs,
    prepare_image,
    restore_geometry,
    to_uint8,
)
from tests.data.conftest import FUZZ, iou, needs_samples

# --- bit depths and model inputs ----------------------------------------------------------------

def test_to_uint8_keeps_16_bit_range():
    image = np.array([[0, 32768, 65535]], np.uint16)
    np.testing.assert_array_equal(to_uint8(image), [[0, 128, 255]])


def test_to_uint8_spreads_12_bit_scans_over_all_grey_levels():
    ramp = np.arange(4096, dtype=np.uint16).reshape(64, 64)  # a 12-bit scan in a 16-bit file
    scaled = to_uint8(ramp)
    assert scaled.min() == 0 and scaled.max() == 255
    assert len(np.unique(scaled)) == 256  # a fixed 65535 scale left 17 levels
    assert to_uint8(np.array([[0, 1023]], np.uint16)).tolist() == [[0, 255]]  # 10-bit
    with pytest.raises(ValueError, match="NaN"):
        to_uint8(np.array([[np.nan, 1.0]], np.float32))


def test_model_inputs_scale_uint8_to_unit_floats_for_numpy_and_jax():
    images = np.array([[0, 51, 255]], np.uint8)
    for array in (images, jnp.asarray(images)):
        inputs = model_inputs(array)
        assert inputs.dtype == np.float32
        np.testing.assert_allclose(np.asarray(inputs), [[0.0, 0.2, 1.0]], rtol=1e-6)


# --- Preprocess --------------------------------------------------------------------------------

def test_preprocess_resizes_and_keeps_mask_binary():
    record = SyntheticMammograms(1, 128)[0]
    out = Preprocess(64, clahe_clip_limit=2.0, clahe_tile_grid=8).map(record)
    assert out["image"].shape == out["mask"].shape == (64, 64, 1)
    assert out["image"].dtype == out["mask"].dtype == np.uint8
    assert set(np.unique(out["mask"])) <= {0, 1}


def test_preprocess_from_config_and_a_bad_side(smoke_config):
    data = smoke_config.data
    preprocess = Preprocess.from_config(data)
    assert (preprocess.image_size, preprocess.clahe_clip_limit, preprocess.clahe_tile_grid,
            preprocess.crop_breast, preprocess.canonical_side) == (
        data.image_size, data.clahe_clip_limit, data.clahe_tile_grid, data.crop_breast,
        data.canonical_side)
    with pytest.raises(ValueError, match="canonical_side must be"):
        Preprocess(64, 2.0, 8, canonical_side="top")


def test_breast_crop_keeps_every_lesion_pixel():
    image = np.full((256, 256), 10, np.uint8)
    image[40:216, :110] = 180  # the breast, against the left edge
    mask = np.zeros_like(image)
    mask[200:220, 220:240] = 1  # a lesion the breast box alone would cut off
    out = Preprocess(64, clahe_clip_limit=0, clahe_tile_grid=8).map(
        {"image": image, "mask": mask, "path": "x.png"})
    assert out["mask"].sum() > 0


def test_grow_box_covers_the_mask_and_the_model_size():
    mask = np.zeros((100, 120), np.uint8)
    mask[90:95, 5:8] = 1
    assert grow_box((10, 60, 20, 100), 16, (100, 120), mask) == (10, 95, 5, 100)
    # 10 px tall and wide, model 32: grown around its centre, kept inside the image.
    assert grow_box((40, 50, 0, 10), 32, (100, 120)) == (29, 61, 0, 32)


def test_breast_crop_drops_label_and_film_border_and_finds_the_side():
    image = np.full((300, 200), 10, np.uint8)
    breast = np.zeros_like(image)
    cv2.ellipse(breast, (199, 150), (120, 110), 0, 0, 360, 1, -1)  # against the right edge
    image[breast > 0] = 120
    image[20:50, 15:60] = 250  # burned-in label on the far side
    image[:, :3] = 200  # bright film edge
    (y0, y1, x0, x1), right = breast_box(image)
    assert right
    assert x0 > 60 and x1 == 200, "label and film edge are outside the box"
    assert breast[y0:y1, x0:x1].sum() == breast.sum()
    prepared = Preprocess(64, 0.0, 8).map({"image": image, "mask": breast})
    assert prepared["mask"][:, :32].sum() > prepared["mask"][:, 32:].sum(), "mirrored left"


def test_restore_geometry_puts_the_map_back_inside_the_crop(smoke_config):
    image = np.ascontiguousarray(synthetic_mammogram(2, 1, size=128)["image"][:, :100])  # 128x100
    prepared, geometry = prepare_image(image, smoke_config.data)
    assert prepared.shape == (64, 64) and prepared.dtype == np.uint8
    assert geometry.original_shape == image.shape
    restored = restore_geometry(np.ones((64, 64), np.float32), geometry)
    assert restored.shape == image.shape and restored.dtype == np.float32
    y0, y1, x0, x1 = geometry.box
    np.testing.assert_allclose(restored[y0:y1, x0:x1], 1.0, rtol=1e-5)
    assert restored.sum() == pytest.approx((y1 - y0) * (x1 - x0), rel=1e-5)  # 0 outside the crop


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


# --- on the real Mini-DDSM sample --------------------------------------------------------------

@needs_samples
def test_breast_crop_keeps_every_lesion_and_drops_background(samples):
    areas = []
    for i in range(len(samples)):
        record = samples[i]
        (y0, y1, x0, x1), _ = breast_box(record["image"])
        if record["mask"].any():
            assert record["mask"][y0:y1, x0:x1].sum() == record["mask"].sum(), record["path"]
        areas.append((y1 - y0) * (x1 - x0) / record["image"].size)
    assert np.median(areas) < 0.8, "the crop removes film background"


@needs_samples
def test_prepare_image_matches_training_and_restore_geometry_inverts_it(samples, data_config):
    data_config.image_size = 256
    preprocess = Preprocess.from_config(data_config)
    flips = set()
    for i in range(len(samples)):
        record = samples[i]
        if not record["mask"].any():
            continue
        image, geometry = prepare_image(record["image"], data_config)
        trained = preprocess.map(record)
        np.testing.assert_array_equal(image, trained["image"][..., 0])
        assert image[:, :128].mean() > image[:, 128:].mean(), "breast mirrored to the left"
        flips.add(geometry.flipped)
        restored = restore_geometry(trained["mask"][..., 0].astype(np.float32), geometry)
        assert restored.shape == record["mask"].shape
        assert iou(restored >= 0.5, record["mask"]) > 0.85, record["path"]
    assert flips == {True, False}
