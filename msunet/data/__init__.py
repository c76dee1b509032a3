"""Data: sources, deterministic preprocessing, random augmentation and grain pipelines."""

from msunet.data.augment import Augment
from msunet.data.pipeline import build_source, eval_dataset, train_dataset
from msunet.data.preprocess import Preprocess, clahe
from msunet.data.synthetic import SyntheticMammograms, synthetic_mammogram

__all__ = [
    "Augment",
    "Preprocess",
    "SyntheticMammograms",
    "build_source",
    "clahe",
    "eval_dataset",
    "synthetic_mammogram",
    "train_dataset",
]
