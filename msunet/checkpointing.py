"""Every orbax call of msunet, in one place.

A run keeps two checkpoint trees (their folders are named by `msunet.workdir.Workdir`):
- `checkpoints/`: the latest steps (train state + grain iterator state, so a resumed run reads
  exactly the batches an uninterrupted one would); `max_to_keep` bounds disk use.
- `best/`: the single best step by the validation metric (train state only).
Orbax writes each step to a temporary directory and renames it when complete, so a crash during
a save leaves the previous checkpoint usable.
"""

from __future__ import annotations

import pathlib
from typing import Any, NamedTuple

import grain
import orbax.checkpoint as ocp

KINDS = ("latest", "best")


class Restored(NamedTuple):
    """What `Checkpointer.restore` gives back."""

    step: int
    state: Any
    meta: dict[str, Any]


class Checkpointer:
    """Latest and best checkpoints of one run (`Workdir.checkpointer()` builds one)."""

    def __init__(self, latest_dir: str | pathlib.Path, best_dir: str | pathlib.Path,
                 max_to_keep: int = 2) -> None:
        self._latest = ocp.CheckpointManager(
            pathlib.Path(latest_dir).absolute(),
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
            item_names=("state", "data", "meta"),
        )
        self._best = ocp.CheckpointManager(
            pathlib.Path(best_dir).absolute(),
            options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True),
            item_names=("state",),
        )

    def _manager(self, kind: str) -> ocp.CheckpointManager:
        if kind not in KINDS:
            raise ValueError(f"unknown checkpoint kind {kind!r}; expected one of {KINDS}")
        return self._latest if kind == "latest" else self._best

    def latest_step(self, kind: str = "latest") -> int | None:
        """The newest complete step of `kind`, or None when there is none."""
        return self._manager(kind).latest_step()

    def save(self, step: int, state: Any, data_iterator: grain.DatasetIterator,
             meta: dict[str, Any]) -> None:
        """Save train state, data iterator position and loop bookkeeping as one step (async)."""
        self._latest.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=grain.checkpoint.CheckpointSave(data_iterator),
            meta=ocp.args.JsonSave(meta),
        ), force=True)

    def save_best(self, step: int, state: Any) -> None:
        """Replace the best checkpoint with this step's state."""
        self._best.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)),
                        force=True)

    def restore(self, abstract_state: Any, *, kind: str = "latest", step: int | None = None,
                data_iterator: grain.DatasetIterator | None = None) -> Restored:
        """Restore a step of `kind` (default: the newest); also rewinds `data_iterator`."""
        manager = self._manager(kind)
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no {kind} checkpoint in {manager.directory}")
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        if kind == "latest":
            items["meta"] = ocp.args.JsonRestore()
        restored = manager.restore(step, args=ocp.args.Composite(**items))
        return Restored(step, restored["state"], dict(restored.get("meta") or {}))

    def wait(self) -> None:
        """Block until pending asynchronous saves are on disk."""
        self._latest.wait_until_finished()
        self._best.wait_until_finished()

    def close(self) -> None:
        """Finish pending saves and release the managers."""
        self._latest.close()
        self._best.close()
