"""Training augmentation: image and mask move together, and only the rng passed in decides."""

import numpy as np

from msunet.config import base_config
from msunet.data import Augment, Preprocess
from tests.data.conftest import needs_samples


def square_pair():
    mask = np.zeros((64, 64, 1), np.uint8)
    mask[10:30, 12:40] = 1
    return mask * 200, mask


def test_augmentation_moves_image_and_mask_together():
    rng = np.random.default_rng(0)
    image, mask = square_pair()
    augment = Augment(hflip_prob=0.5, vflip_prob=0.5, rotation_prob=1.0, rotation_degrees=30,
                      zoom_prob=1.0, zoom_range=(0.8, 1.2), contrast_prob=0.0)
    for _ in range(10):
        out = augment.random_map({"image": image, "mask": mask.copy()}, rng)
        assert set(np.unique(out["mask"])) <= {0, 1}
        agreement = np.mean((out["image"] > 100) == (out["mask"] > 0))
        assert agreement > 0.98


def test_augmentation_is_a_function_of_the_rng_and_off_when_its_probabilities_are_zero():
    image, mask = square_pair()
    augment = Augment(**base_config().data.augment.to_dict())  # the config's fields are its own
    first = augment.random_map({"image": image, "mask": mask}, np.random.default_rng(3))
    again = augment.random_map({"image": image, "mask": mask}, np.random.default_rng(3))
    for key in ("image", "mask"):
        np.testing.assert_array_equal(first[key], again[key])
        assert first[key].shape == (64, 64, 1)
    off = Augment(hflip_prob=0.0, vflip_prob=0.0, rotation_prob=0.0, zoom_prob=0.0,
                  contrast_prob=0.0)
    out = off.random_map({"image": image, "mask": mask}, np.random.default_rng(0))
    np.testing.assert_array_equal(out["image"], image)
    np.testing.assert_array_equal(out["mask"], mask)


@needs_samples
def test_augmented_real_image_and_mask_stay_aligned(samples):
    record = next(samples[i] for i in range(len(samples)) if samples[i]["mask"].mean() > 0.02)
    prepared = Preprocess(128, 2.0, 8).map(record)
    marker = {"image": prepared["mask"] * 255, "mask": prepared["mask"]}
    augment = Augment(rotation_prob=1.0, rotation_degrees=30, zoom_prob=1.0,
                      zoom_range=(0.8, 1.2), contrast_prob=0.0)
    for seed in range(8):
        out = augment.random_map(prepared, np.random.default_rng(seed))
        moved = augment.random_map(marker, np.random.default_rng(seed))
        assert set(np.unique(out["mask"])) <= {0, 1} and out["mask"].any()
        assert np.mean((moved["image"] > 127) == (out["mask"] > 0)) > 0.99
        lesion = out["mask"][..., 0] > 0
        assert out["image"][..., 0][lesion].mean() > out["image"][..., 0][~lesion].mean()
