"""grain pipelines: which source a config opens, batches that do not depend on reader threads or
worker processes, ordered evaluation passes and the padding of their last batch."""

import cv2
import numpy as np
import pytest

from msunet.data import (
    SPLITS,
    BadSampleError,
    CachedSource,
    ImageFolder,
    Preprocess,
    SyntheticMammograms,
    build_source,
    eval_dataset,
    open_source,
    train_dataset,
)
from msunet.data.pipeline import pad_batch
from msunet.workdir import Workdir
from tests.data.conftest import folder_data, needs_samples, write_folder


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


def test_pad_batch_pads_to_the_batch_size_and_marks_the_real_rows():
    batch = {"image": np.ones((2, 4, 4, 1), np.uint8), "mask": np.ones((2, 4, 4, 1), np.uint8)}
    padded = pad_batch(batch, 4)
    assert padded["image"].shape == padded["mask"].shape == (4, 4, 4, 1)
    assert padded["image"].dtype == np.uint8
    np.testing.assert_array_equal(padded["valid"], [True, True, False, False])
    assert padded["mask"][:2].all() and not padded["mask"][2:].any()
    assert pad_batch(batch, 2)["valid"].all()


def test_synthetic_splits_need_no_cache_and_are_no_file_dataset(smoke_config):
    data = smoke_config.data
    source = build_source(data, "val")
    assert isinstance(source, SyntheticMammograms) and len(source) == data.num_val
    with pytest.raises(ValueError, match="unknown split 'holdout'"):
        build_source(data, "holdout")
    with pytest.raises(ValueError, match="is not a file dataset"):
        open_source(data)


def test_a_folder_dataset_is_cached_split_by_case_and_batched(smoke_config, tmp_path):
    data = folder_data(smoke_config, *write_folder(tmp_path / "data", count=8))
    assert isinstance(open_source(data), ImageFolder) and len(open_source(data)) == 8
    paths = {"cache_dir": tmp_path / "cache", "splits_file": tmp_path / "splits.json"}
    sources = {split: build_source(data, split, **paths) for split in ("train", "val", "test")}
    assert all(isinstance(source, CachedSource) for source in sources.values())
    assert [len(sources[split]) for split in ("train", "val", "test")] == [6, 1, 1]
    cases = [{s.record(i)["case"] for i in range(len(s))} for s in sources.values()]
    assert len(set.union(*cases)) == 8, "every image is its own case, in one split only"
    assert paths["splits_file"].is_file()
    assert len(list(paths["cache_dir"].iterdir())) == 1, "the splits share one cache"
    batch = next(iter(train_dataset(data, sources["train"], batch_size=4, seed=0)))
    assert batch["image"].shape == batch["mask"].shape == (4, 64, 64, 1)


def test_a_bad_file_read_in_a_worker_process_is_named(tmp_path, smoke_config):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for stem in "abcd":
        cv2.imwrite(str(images / f"{stem}.png"), np.full((64, 64), 100, np.uint8))
        cv2.imwrite(str(masks / f"{stem}.png"), np.zeros((64, 64), np.uint8))
    (images / "c.png").write_bytes(b"broken")
    data = smoke_config.data.copy_and_resolve_references()
    data.num_workers = 2
    with pytest.raises(BadSampleError, match="c.png: unreadable"):
        next(iter(train_dataset(data, ImageFolder(images, masks), batch_size=4, seed=0)))


@needs_samples
def test_batches_identical_for_zero_and_two_worker_processes(tmp_path, data_config):
    source = build_source(data_config, "train", **Workdir(tmp_path).data_paths(data_config))
    assert isinstance(source, CachedSource)

    def first_batches(workers):
        data_config.num_workers = workers
        iterator = iter(train_dataset(data_config, source, batch_size=4, seed=5))
        return [next(iterator) for _ in range(10)]  # crosses an epoch boundary

    for one, two in zip(first_batches(0), first_batches(2), strict=True):
        np.testing.assert_array_equal(one["image"], two["image"])
        np.testing.assert_array_equal(one["mask"], two["mask"])
    batches = list(eval_dataset(data_config, source, batch_size=8))
    assert sum(len(b["image"]) for b in batches) == len(source)


def test_split_all_is_every_image_of_a_file_dataset(tmp_path, smoke_config):
    images, masks = write_folder(tmp_path / "data", count=8)
    data = folder_data(smoke_config, images, masks)
    paths = Workdir(tmp_path / "work").data_paths(data)
    everything = build_source(data, "all", **paths)
    assert len(everything) == 8
    assert sum(len(build_source(data, split, **paths)) for split in SPLITS) == 8
    with pytest.raises(ValueError, match="split 'all' is every image of a dataset on disk"):
        build_source(smoke_config.data, "all")
