"""The synthetic source, preprocessing, augmentation and the grain pipelines."""

import numpy as np
import pytest

from msunet.data import Augment, Preprocess, SyntheticMammograms, eval_dataset, train_dataset
from msunet.data.preprocess import to_uint8


def test_synthetic_images_are_deterministic_and_splits_disjoint():
    a, b = SyntheticMammograms(4, 64, seed=3), SyntheticMammograms(4, 64, seed=3)
    for i in range(4):
        np.testing.assert_array_equal(a[i]["image"], b[i]["image"])
        np.testing.assert_array_equal(a[i]["mask"], b[i]["mask"])
    val = SyntheticMammograms(4, 64, seed=3, split="val")
    assert not np.array_equal(a[0]["image"], val[0]["image"])
    assert not np.array_equal(a[0]["image"], SyntheticMammograms(4, 64, seed=4)[0]["image"])


def test_synthetic_set_has_lesions_lesion_free_images_and_bright_lesions():
    source = SyntheticMammograms(40, 128)
    records = [source[i] for i in range(len(source))]
    fractions = np.array([r["mask"].mean() for r in records])
    assert all(r["image"].dtype == np.uint8 and r["image"].shape == (128, 128) for r in records)
    assert all(set(np.unique(r["mask"])) <= {0, 1} for r in records)
    assert 0.1 <= np.mean(fractions == 0) <= 0.45, "some, not most, images are lesion-free"
    assert np.all(fractions < 0.2), "lesions are small, as in mammograms"
    for r in records:
        if r["mask"].any():  # lesions are denser (brighter) than their surroundings on average
            assert r["image"][r["mask"] > 0].mean() > r["image"][r["mask"] == 0].mean()
    assert records[0]["path"] == "synthetic://train/0"


def test_source_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown split"):
        SyntheticMammograms(4, 64, split="holdout")
    with pytest.raises(IndexError):
        SyntheticMammograms(4, 64)[4]


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


def test_preprocess_resizes_and_keeps_mask_binary():
    record = SyntheticMammograms(1, 128)[0]
    out = Preprocess(64, clahe_clip_limit=2.0, clahe_tile_grid=8).map(record)
    assert out["image"].shape == out["mask"].shape == (64, 64, 1)
    assert out["image"].dtype == out["mask"].dtype == np.uint8
    assert set(np.unique(out["mask"])) <= {0, 1}


def test_augmentation_moves_image_and_mask_together():
    rng = np.random.default_rng(0)
    mask = np.zeros((64, 64, 1), np.uint8)
    mask[10:30, 12:40] = 1
    augment = Augment(hflip_prob=0.5, vflip_prob=0.5, rotation_prob=1.0, rotation_degrees=30,
                      zoom_prob=1.0, zoom_range=(0.8, 1.2), contrast_prob=0.0)
    for _ in range(10):
        out = augment.random_map({"image": mask * 200, "mask": mask.copy()}, rng)
        assert set(np.unique(out["mask"])) <= {0, 1}
        agreement = np.mean((out["image"] > 100) == (out["mask"] > 0))
        assert agreement > 0.98


def test_train_batches_identical_for_any_thread_count(smoke_config):
    config = smoke_config.copy_and_resolve_references()
    source = SyntheticMammograms(12, 64)

    def first_batches(threads):
        config.data.num_threads = threads
        iterator = iter(train_dataset(config.data, source, batch_size=4, seed=7))
        return [next(iterator) for _ in range(5)]  # crosses an epoch boundary

    for one, two in zip(first_batches(1), first_batches(2), strict=True):
        np.testing.assert_array_equal(one["image"], two["image"])
        np.testing.assert_array_equal(one["mask"], two["mask"])


def test_eval_dataset_is_one_ordered_pass(smoke_config):
    source = SyntheticMammograms(6, 64)
    batches = list(eval_dataset(smoke_config.data, source, batch_size=4))
    assert [len(b["image"]) for b in batches] == [4, 2]
    first = Preprocess(64, smoke_config.data.clahe_clip_limit,
                       smoke_config.data.clahe_tile_grid).map(source[0])
    np.testing.assert_array_equal(batches[0]["image"][0], first["image"])


def test_breast_crop_keeps_every_lesion_pixel():
    image = np.full((256, 256), 10, np.uint8)
    image[40:216, :110] = 180  # the breast, against the left edge
    mask = np.zeros_like(image)
    mask[200:220, 220:240] = 1  # a lesion the breast box alone would cut off
    out = Preprocess(64, clahe_clip_limit=0, clahe_tile_grid=8).map(
        {"image": image, "mask": mask, "path": "x.png"})
    assert out["mask"].sum() > 0


def test_grow_box_covers_the_mask_and_the_model_size():
    from msunet.data.preprocess import grow_box

    mask = np.zeros((100, 120), np.uint8)
    mask[90:95, 5:8] = 1
    assert grow_box((10, 60, 20, 100), 16, (100, 120), mask) == (10, 95, 5, 100)
    # 10 px tall and wide, model 32: grown around its centre, kept inside the image.
    assert grow_box((40, 50, 0, 10), 32, (100, 120)) == (29, 61, 0, 32)
