"""The random-patch sampler for large images."""

import numpy as np
import pytest

from msunet.data.patches import RandomPatch


def pair(size=256):
    mask = np.zeros((size, size, 1), np.uint8)
    mask[200:210, 30:40] = 1  # one small lesion: 0.15 % of the image
    return {"image": np.arange(size * size, dtype=np.uint32).reshape(size, size, 1),
            "mask": mask}


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.8])
def test_patches_hit_lesions_at_the_configured_rate(fraction):
    rng = np.random.default_rng(0)
    sampler = RandomPatch(32, foreground_fraction=fraction)
    element = pair()
    hits = np.mean([sampler.random_map(element, rng)["mask"].any() for _ in range(2000)])
    uniform_rate = (32 + 10 - 1) ** 2 / (256 - 32 + 1) ** 2  # a corner landing near the lesion
    expected = fraction + (1 - fraction) * uniform_rate
    assert abs(hits - expected) < 0.04


def test_patch_image_and_mask_come_from_the_same_window():
    rng = np.random.default_rng(1)
    element = pair()
    for _ in range(20):
        out = RandomPatch(64, foreground_fraction=1.0).random_map(element, rng)
        assert out["image"].shape == out["mask"].shape[:2] + (1,) == (64, 64, 1)
        top, left = np.argwhere(element["image"][..., 0] == out["image"][0, 0, 0])[0]
        np.testing.assert_array_equal(out["mask"], element["mask"][top:top + 64, left:left + 64])
        assert out["mask"].any()


def test_bad_patch_settings_raise():
    with pytest.raises(ValueError, match="foreground_fraction"):
        RandomPatch(32, foreground_fraction=1.5)
    with pytest.raises(ValueError, match="exceeds the image size"):
        RandomPatch(512).random_map(pair(), np.random.default_rng(0))


def test_train_dataset_yields_patches_of_the_configured_size(smoke_config):
    from msunet.data import SyntheticMammograms, train_dataset

    config = smoke_config.copy_and_resolve_references()
    config.data.patch_size = 32
    batch = next(iter(train_dataset(config.data, SyntheticMammograms(8, 64), 4, seed=0)))
    assert batch["image"].shape == batch["mask"].shape == (4, 32, 32, 1)


def test_patches_split_over_hosts_read_disjoint_images(smoke_config):
    from msunet.data import SyntheticMammograms, train_dataset

    config = smoke_config.copy_and_resolve_references()
    config.data.augment.contrast_prob = 0.0
    source = SyntheticMammograms(8, 64)
    first = [next(iter(train_dataset(config.data, source, 4, 0, index, 2)))["image"]
             for index in (0, 1)]
    assert not np.array_equal(first[0], first[1])
