"""What a data source is, and the registry that `data.source` names.

Two kinds of dataset feed the pipeline:
- a *generated* source (the built-in synthetic mammograms) makes each split itself:
  `from_config(data, split)`;
- a *file* dataset (`FileSource` subclass: Mini-DDSM, CBIS-DDSM, a folder) lists its images and
  their cases: `from_config(data)`; the pipeline preprocesses it into the cache and splits it by
  patient (`build_source`).

Either way, what the pipeline reads per split is a `Source`. A new dataset is a `FileSource`
subclass in its own module of `msunet/data/` and one line in SOURCES below.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from msunet.data.cbis import CBISDDSM
from msunet.data.folder import ImageFolder
from msunet.data.miniddsm import MiniDDSM
from msunet.data.synthetic import SyntheticMammograms


@runtime_checkable
class Source(Protocol):
    """A grain random-access source of one split.

    `source[i]` is {'image': uint8/uint16 (H, W[, 1]), 'mask': uint8 {0, 1} (H, W[, 1]), ...};
    `record(i)` is the same item's 'path' and 'case' (and metadata) without decoding pixels.
    `preprocessed` says whether the items are already at the model's size and CLAHE'd (the
    cache's are) or still need `Preprocess`.
    """

    preprocessed: bool

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...

    def record(self, index: int) -> dict[str, Any]: ...


# The names `data.source` may take.
SOURCES: dict[str, type] = {
    "synthetic": SyntheticMammograms,
    "miniddsm": MiniDDSM,
    "cbis": CBISDDSM,
    "folder": ImageFolder,
}


def check_source_name(name: str) -> type:
    """The source class registered as `name`; ValueError naming the choices otherwise."""
    if name not in SOURCES:
        raise ValueError(f"unknown data.source {name!r}; expected one of {sorted(SOURCES)}")
    return SOURCES[name]
