"""grain pipelines: source -> preprocess -> shuffle/repeat -> augment -> batch -> iterator.

Random-access steps come before `to_iter_dataset` and batching happens on the MapDataset, which
makes batches byte-identical for any reader-thread or worker-process count with the same seed.
Real datasets are read through the preprocessing cache and split by patient.
"""

from __future__ import annotations

import pathlib
from typing import Any

import grain
import ml_collections

from msunet.data.augment import Augment
from msunet.data.cache import CachedSource, build_cache, cache_root
from msunet.data.cbis import CBISDDSM
from msunet.data.files import FileSource
from msunet.data.folder import ImageFolder
from msunet.data.miniddsm import MiniDDSM
from msunet.data.patches import RandomPatch
from msunet.data.preprocess import Preprocess
from msunet.data.splits import load_or_create_splits
from msunet.data.synthetic import SyntheticMammograms

SPLITS = ("train", "val", "test")
SOURCES = ("synthetic", "miniddsm", "cbis", "folder")


def open_source(data: ml_collections.ConfigDict) -> FileSource:
    """All images of the real dataset named by `data.source`, unsplit and unprocessed."""
    if data.source not in SOURCES[1:]:
        raise ValueError(f"data.source {data.source!r} is not a file dataset; expected one of "
                         f"{SOURCES[1:]}")
    if not data.root:
        raise ValueError(f"data.source={data.source!r} needs data.root, the dataset folder")
    if data.source == "miniddsm":
        return MiniDDSM(data.root, data.on_bad_sample)
    if data.source == "cbis":
        return CBISDDSM(data.root, data.on_bad_sample)
    if not data.masks_dir:
        raise ValueError("data.source='folder' needs data.masks_dir next to data.root")
    return ImageFolder(data.root, data.masks_dir, data.on_bad_sample)


def build_source(data: ml_collections.ConfigDict, split: str,
                 workdir: str | pathlib.Path | None = None) -> Any:
    """The grain random-access source of one split named by `data.source`.

    Real datasets are preprocessed into the cache (built on first use) and split by patient;
    the split is saved to / read from `<workdir>/splits.json`.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if data.source == "synthetic":
        sizes = {"train": data.num_train, "val": data.num_val, "test": data.num_test}
        return SyntheticMammograms(sizes[split], data.image_size, seed=data.seed, split=split)
    if data.source not in SOURCES:
        raise ValueError(f"unknown data.source {data.source!r}; expected one of {SOURCES}")
    source = open_source(data)
    cached = build_cache(source, data, cache_root(data, workdir), data.num_threads)
    splits = load_or_create_splits(workdir, data.source,
                                   (entry.case for entry in source.entries),
                                   data.val_fraction, data.test_fraction, data.split_seed)
    cases = set(splits[split])
    rows = [i for i in range(len(cached)) if cached.record(i)["case"] in cases]
    if not rows:
        raise ValueError(f"the {split} split of {source.name} is empty ({len(cases)} cases); "
                         "raise data.val_fraction/data.test_fraction or add data")
    return cached.subset(rows)


def _preprocessed(data: ml_collections.ConfigDict, source: Any) -> grain.MapDataset:
    dataset = grain.MapDataset.source(source)
    if isinstance(source, CachedSource):
        return dataset
    return dataset.map(Preprocess.from_config(data))


def _read_options(data: ml_collections.ConfigDict) -> grain.ReadOptions:
    return grain.ReadOptions(num_threads=data.num_threads, prefetch_buffer_size=data.prefetch)


def train_dataset(data: ml_collections.ConfigDict, source: Any, batch_size: int,
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


def eval_dataset(data: ml_collections.ConfigDict, source: Any,
                 batch_size: int) -> grain.IterDataset:
    """One ordered pass over a split, the last batch possibly smaller (in-process: a pass is
    short, and starting worker processes for it would cost more than it saves)."""
    dataset = _preprocessed(data, source).batch(batch_size, drop_remainder=False)
    return dataset.to_iter_dataset(_read_options(data))
