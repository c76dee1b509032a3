"""grain pipelines: source -> preprocess -> shuffle/repeat -> augment -> batch -> iterator.

Random-access steps come before `to_iter_dataset` and batching happens on the MapDataset, which
makes batches byte-identical for any reader-thread or worker-process count with the same seed.
Real datasets are read through the preprocessing cache and split by patient.
"""

from __future__ import annotations

import pathlib

import grain
import ml_collections
import numpy as np

from msunet.data.augment import Augment
from msunet.data.cache import build_cache, default_cache_dir
from msunet.data.files import FileSource
from msunet.data.patches import RandomPatch
from msunet.data.preprocess import Preprocess
from msunet.data.sources import Source, check_source_name
from msunet.data.splits import ALL, SPLITS, load_or_create_splits


def open_source(data: ml_collections.ConfigDict) -> FileSource:
    """All images of the file dataset named by `data.source`, unsplit and unprocessed."""
    source_class = check_source_name(data.source)
    if not issubclass(source_class, FileSource):
        raise ValueError(f"data.source {data.source!r} is not a file dataset")
    return source_class.from_config(data)


def build_source(data: ml_collections.ConfigDict, split: str, *,
                 cache_dir: str | pathlib.Path | None = None,
                 splits_file: str | pathlib.Path | None = None) -> Source:
    """The source of one split of the dataset named by `data.source`.

    File datasets are preprocessed into the cache under `cache_dir` (default: `data.cache_dir`
    or a temp folder; built on first use) and split by patient; the split is read from / saved
    to `splits_file` (a run passes its `Workdir.data_paths(data)`). Split `ALL` ("all") is every
    image of a file dataset, unsplit: a run scored on another dataset.
    """
    if split not in (*SPLITS, ALL):
        raise ValueError(f"unknown split {split!r}; expected one of {(*SPLITS, ALL)}")
    source_class = check_source_name(data.source)
    if not issubclass(source_class, FileSource):
        if split == ALL:
            raise ValueError(f"split {ALL!r} is every image of a dataset on disk; data.source "
                             f"{data.source!r} has only its {SPLITS} splits")
        return source_class.from_config(data, split)
    source = open_source(data)
    cached = build_cache(source, data, cache_dir or default_cache_dir(data), data.num_threads)
    if split == ALL:
        return cached
    splits = load_or_create_splits(splits_file, data.source,
                                   (entry.case for entry in source.entries),
                                   data.val_fraction, data.test_fraction, data.split_seed)
    cases = set(splits[split])
    rows = [i for i in range(len(cached)) if cached.record(i)["case"] in cases]
    if not rows:
        raise ValueError(f"the {split} split of {source.name} is empty ({len(cases)} cases); "
                         "raise data.val_fraction/data.test_fraction or add data")
    return cached.subset(rows)


def _preprocessed(data: ml_collections.ConfigDict, source: Source) -> grain.MapDataset:
    dataset = grain.MapDataset.source(source)
    return dataset if source.preprocessed else dataset.map(Preprocess.from_config(data))


def _read_options(data: ml_collections.ConfigDict) -> grain.ReadOptions:
    return grain.ReadOptions(num_threads=data.num_threads, prefetch_buffer_size=data.prefetch)


def train_dataset(data: ml_collections.ConfigDict, source: Source, batch_size: int,
                  seed: int, shard_index: int = 0, shard_count: int = 1) -> grain.IterDataset:
    """An endless, reshuffled-per-epoch, augmented stream of training batches.

    With `data.patch_size` > 0, each example is a random patch of that size (a share
    `data.patch_foreground_fraction` centred on lesion pixels). With `shard_count` > 1 (one
    shard per host), this process reads only every `shard_count`-th image. With
    `data.num_workers` > 0, batches are produced by that many worker processes (grain's
    mp_prefetch); they are the same batches, in the same order, as in-process.
    """
    dataset = _preprocessed(data, source)[shard_index::shard_count].shuffle(seed=seed).repeat()
    if data.patch_size:
        dataset = dataset.random_map(
            RandomPatch(data.patch_size, data.patch_foreground_fraction), seed=seed + 1)
    dataset = (
        dataset
        .random_map(Augment(**data.augment.to_dict()), seed=seed)
        .batch(batch_size, drop_remainder=True)
    ).to_iter_dataset(_read_options(data))
    if data.num_workers > 0:
        dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=data.num_workers))
    return dataset


def eval_dataset(data: ml_collections.ConfigDict, source: Source,
                 batch_size: int) -> grain.IterDataset:
    """One ordered pass over a split, the last batch possibly smaller (in-process: a pass is
    short, and starting worker processes for it would cost more than it saves)."""
    dataset = _preprocessed(data, source).batch(batch_size, drop_remainder=False)
    return dataset.to_iter_dataset(_read_options(data))


def pad_batch(batch: dict[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
    """Pad a last, smaller batch to `batch_size` (one compiled shape) and mark real rows valid."""
    count = len(batch["image"])
    padded = {key: np.concatenate([value, np.zeros((batch_size - count,) + value.shape[1:],
                                                   value.dtype)])
              for key, value in batch.items()}
    padded["valid"] = np.arange(batch_size) < count
    return padded
