"""Data: sources, deterministic preprocessing, random augmentation and grain pipelines.

Imports nothing else from msunet. Flow: a `Source` (sources.py) -> `Preprocess` (preprocess.py,
or the cache) -> augmentation (augment.py, patches.py) -> batches (pipeline.py).
"""

from msunet.data.augment import Augment
from msunet.data.cache import CachedSource, build_cache
from msunet.data.cbis import CBISDDSM
from msunet.data.files import BadSampleError, FileSource, fill_outline
from msunet.data.folder import ImageFolder
from msunet.data.miniddsm import MiniDDSM
from msunet.data.pipeline import build_source, eval_dataset, open_source, train_dataset
from msunet.data.preprocess import Preprocess, clahe
from msunet.data.readers import list_inputs, read_input
from msunet.data.sources import SOURCES, Source, check_source_name
from msunet.data.splits import SPLITS
from msunet.data.synthetic import SyntheticMammograms, synthetic_mammogram

__all__ = [
    "CBISDDSM",
    "SOURCES",
    "SPLITS",
    "Augment",
    "BadSampleError",
    "CachedSource",
    "FileSource",
    "ImageFolder",
    "MiniDDSM",
    "Preprocess",
    "Source",
    "SyntheticMammograms",
    "build_cache",
    "build_source",
    "check_source_name",
    "clahe",
    "eval_dataset",
    "fill_outline",
    "list_inputs",
    "open_source",
    "read_input",
    "synthetic_mammogram",
    "train_dataset",
]
