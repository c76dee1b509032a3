"""The one module that knows a run directory's layout, and the run's saved bookkeeping.

A workdir written by `msunet.train` (or `msunet.convert`) holds:

    config.json          the config of the run (evaluate and predict rebuild the model from it)
    splits.json          real datasets: the patient-level split, drawn once
    cache/               real datasets: preprocessed images (unless data.cache_dir is set)
    checkpoints/         latest train states + data-iterator positions + RunMeta (resume)
    best/                the state with the best validation metric
    metrics.jsonl        one JSON row per logged step (train_* and val_* scalars)
    tensorboard/         the same scalars as TensorBoard events
    training_curves.png  loss/accuracy/IoU curves drawn at the end of training
    eval/<split>_<checkpoint>/  msunet.evaluate's reports

Every other module asks a `Workdir` for these paths; none spells them itself.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from typing import Any

import flax
import ml_collections

from msunet.checkpointing import Checkpointer
from msunet.config import base_config
from msunet.state import abstract_train_state


@dataclasses.dataclass(frozen=True)
class Workdir:
    """The paths of one run directory, and reading/writing its config."""

    root: pathlib.Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", pathlib.Path(self.root))

    config_file = property(lambda self: self.root / "config.json")
    splits_file = property(lambda self: self.root / "splits.json")
    checkpoints_dir = property(lambda self: self.root / "checkpoints")
    best_dir = property(lambda self: self.root / "best")
    metrics_file = property(lambda self: self.root / "metrics.jsonl")
    tensorboard_dir = property(lambda self: self.root / "tensorboard")
    curves_file = property(lambda self: self.root / "training_curves.png")

    def cache_dir(self, data: ml_collections.ConfigDict) -> pathlib.Path:
        """`data.cache_dir` when set, else `<workdir>/cache`."""
        return pathlib.Path(data.cache_dir).expanduser() if data.cache_dir else self.root / "cache"

    def data_paths(self, data: ml_collections.ConfigDict) -> dict[str, pathlib.Path]:
        """The keyword arguments `msunet.data.build_source` takes for this run."""
        return {"cache_dir": self.cache_dir(data), "splits_file": self.splits_file}

    def eval_dir(self, split: str, checkpoint: str) -> pathlib.Path:
        """Where `msunet.evaluate` writes the reports of one split and checkpoint."""
        return self.root / "eval" / f"{split}_{checkpoint}"

    def holds_run(self) -> bool:
        """Whether a run (its config or checkpoints) is already here."""
        return self.config_file.exists() or self.checkpoints_dir.exists()

    def checkpointer(self, max_to_keep: int = 2) -> Checkpointer:
        """The latest/best checkpoint managers of this run."""
        return Checkpointer(self.checkpoints_dir, self.best_dir, max_to_keep=max_to_keep)

    def save_config(self, config: ml_collections.ConfigDict) -> None:
        """Write config.json (the directory is created if needed)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(config.to_json_best_effort(indent=2))

    def load_config(self) -> ml_collections.ConfigDict:
        """The config the run saved, on top of today's defaults (so fields added since the run,
        e.g. new `eval` options, have their default values)."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"workdir {self.root} does not exist")
        if not self.config_file.is_file():
            raise FileNotFoundError(f"{self.config_file} not found: {self.root} is not a "
                                    "training workdir")
        config = base_config()
        config.update(json.loads(self.config_file.read_text()))
        return config

    def check_compatible(self, config: ml_collections.ConfigDict) -> None:
        """Raise ValueError when the run saved here cannot continue under `config`: another
        image size, or a model whose variables have other names or shapes."""
        if not self.config_file.is_file():
            return
        saved = self.load_config()
        conflicts = []
        if saved.data.image_size != config.data.image_size:
            conflicts.append(f"data.image_size: {saved.data.image_size} in the workdir, "
                             f"{config.data.image_size} now")
        saved_model, model = saved.model.to_dict(), config.model.to_dict()
        if saved_model != model and _variable_shapes(saved) != _variable_shapes(config):
            conflicts += [f"model.{key}: {saved_model.get(key)!r} in the workdir, "
                          f"{model.get(key)!r} now" for key in sorted(set(saved_model) | set(model))
                          if saved_model.get(key) != model.get(key)]
        if conflicts:
            raise ValueError(f"{self.config_file} was written by a run with another shape ("
                             + "; ".join(conflicts) + "): use a new --workdir, or the same "
                             "values to resume")


def _variable_shapes(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """{variable path: shape} of the model `config` describes (traced, not computed)."""
    state = abstract_train_state(config)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    return {"/".join(path): (leaf.shape, str(leaf.dtype))
            for path, leaf in flax.traverse_util.flatten_dict(variables).items()}


@dataclasses.dataclass
class EarlyStoppingState:
    """flax EarlyStopping's counters (best validation loss, validations without a gain)."""

    best_metric: float = math.inf
    patience_count: int = 0
    should_stop: bool = False


@dataclasses.dataclass
class BestCheckpoint:
    """The step, value and validation metrics of the best checkpoint so far (None: none yet)."""

    step: int | None = None
    value: float | None = None
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class RunMeta:
    """The training loop's bookkeeping, saved with every latest checkpoint: what a resumed run
    continues from. A fresh record (nothing validated or skipped) starts a run, e.g. from the
    weights `msunet.convert` imports."""

    early_stopping: EarlyStoppingState = dataclasses.field(default_factory=EarlyStoppingState)
    best: BestCheckpoint = dataclasses.field(default_factory=BestCheckpoint)
    skipped_steps: list[int] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what the checkpoint stores)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, saved: dict[str, Any]) -> RunMeta:
        """The record `to_json` wrote."""
        return cls(early_stopping=EarlyStoppingState(**saved["early_stopping"]),
                   best=BestCheckpoint(**saved["best"]),
                   skipped_steps=list(saved.get("skipped_steps", [])))
