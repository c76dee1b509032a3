"""grain pipelines: source -> preprocess -> shuffle/repeat -> augment -> batch -> iterator.

Random-access steps come before `to_iter_dataset` and batching happens on the MapDataset, which
makes batches byte-identical for any reader-thread count with the same seed.
"""

from __future__ import annotations

from typing import Any

import grain
import ml_collections

from msunet.data.augment import Augment
from msunet.data.preprocess import Preprocess
from msunet.data.synthetic import SyntheticMammograms

SPLITS = ("train", "val", "test")


def build_source(data: ml_collections.ConfigDict, split: str) -> Any:
    """The grain random-access source of one split named by `data.source`."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if data.source == "synthetic":
        sizes = {"train": data.num_train, "val": data.num_val, "test": data.num_test}
        return SyntheticMammograms(sizes[split], data.image_size, seed=data.seed, split=split)
    raise ValueError(f"unknown data.source {data.source!r}; expected one of ('synthetic',)")


def _preprocess(data: ml_collections.ConfigDict) -> Preprocess:
    return Preprocess(data.image_size, data.clahe_clip_limit, data.clahe_tile_grid)


def _read_options(data: ml_collections.ConfigDict) -> grain.ReadOptions:
    return grain.ReadOptions(num_threads=data.num_threads, prefetch_buffer_size=data.prefetch)


def train_dataset(data: ml_collections.ConfigDict, source: Any, batch_size: int,
                  seed: int) -> grain.IterDataset:
    """An endless, reshuffled-per-epoch, augmented stream of training batches."""
    augment = data.augment
    dataset = (
        grain.MapDataset.source(source)
        .map(_preprocess(data))
        .shuffle(seed=seed)
        .repeat()
        .random_map(Augment(**augment.to_dict()), seed=seed)
        .batch(batch_size, drop_remainder=True)
    )
    return dataset.to_iter_dataset(_read_options(data))


def eval_dataset(data: ml_collections.ConfigDict, source: Any,
                 batch_size: int) -> grain.IterDataset:
    """One ordered pass over a split, the last batch possibly smaller."""
    dataset = (
        grain.MapDataset.source(source)
        .map(_preprocess(data))
        .batch(batch_size, drop_remainder=False)
    )
    return dataset.to_iter_dataset(_read_options(data))
