"""The built-in synthetic mammograms: deterministic, split-disjoint, mammogram-like."""

import numpy as np
import pytest

from msunet.data import SyntheticMammograms, synthetic_mammogram
from msunet.data.splits import SPLITS


def test_synthetic_images_are_deterministic_and_splits_disjoint():
    a, b = SyntheticMammograms(4, 64, seed=3), SyntheticMammograms(4, 64, seed=3)
    for i in range(4):
        np.testing.assert_array_equal(a[i]["image"], b[i]["image"])
        np.testing.assert_array_equal(a[i]["mask"], b[i]["mask"])
    val = SyntheticMammograms(4, 64, seed=3, split="val")
    assert not np.array_equal(a[0]["image"], val[0]["image"])
    assert not np.array_equal(a[0]["image"], SyntheticMammograms(4, 64, seed=4)[0]["image"])


def test_one_image_is_a_function_of_seed_and_index():
    first, again = synthetic_mammogram(5, 2, size=64), synthetic_mammogram(5, 2, size=64)
    assert first["image"].dtype == first["mask"].dtype == np.uint8
    assert first["image"].shape == first["mask"].shape == (64, 64)
    np.testing.assert_array_equal(first["image"], again["image"])
    np.testing.assert_array_equal(first["mask"], again["mask"])
    assert not np.array_equal(first["image"], synthetic_mammogram(5, 3, size=64)["image"])


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
    with pytest.raises(ValueError, match="num_images must be positive"):
        SyntheticMammograms(0, 64)
    with pytest.raises(IndexError):
        SyntheticMammograms(4, 64)[4]


def test_from_config_reads_the_split_sizes_of_the_data_config(smoke_config):
    data = smoke_config.data
    sizes = {"train": data.num_train, "val": data.num_val, "test": data.num_test}
    for split in SPLITS:
        source = SyntheticMammograms.from_config(data, split)
        assert (len(source), source.split, source.image_size) == (sizes[split], split,
                                                                 data.image_size)
        assert source[0]["image"].shape == (data.image_size, data.image_size)
    with pytest.raises(ValueError, match="unknown split"):
        SyntheticMammograms.from_config(data, "holdout")


def test_record_names_an_image_without_drawing_it():
    source = SyntheticMammograms(4, 64, split="val")
    assert source.record(3) == {"path": "synthetic://val/3", "case": ""}
    item = source[3]
    assert (item["path"], item["case"]) == ("synthetic://val/3", "")
    assert source.preprocessed is False, "drawn at the model's size but not yet CLAHE'd"
