"""Data: sources, deterministic preprocessing, random augmentation and grain pipelines."""

from msunet.data.augment import Augment
from msunet.data.cache import CachedSource, build_cache
from msunet.data.cbis import CBISDDSM
from msunet.data.files import BadSampleError, fill_outline
from msunet.data.folder import ImageFolder
from msunet.data.miniddsm import MiniDDSM
from msunet.data.pipeline import build_source, eval_dataset, open_source, train_dataset
from msunet.data.preprocess import Preprocess, clahe
from msunet.data.synthetic import SyntheticMammograms, synthetic_mammogram

__all__ = [
    "CBISDDSM",
    "Augment",
    "BadSampleError",
    "CachedSource",
    "ImageFolder",
    "MiniDDSM",
    "Preprocess",
    "SyntheticMammograms",
    "build_cache",
    "build_source",
    "clahe",
    "eval_dataset",
    "fill_outline",
    "open_source",
    "synthetic_mammogram",
    "train_dataset",
]
