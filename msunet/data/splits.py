"""Patient-level train/val/test splits: all views of one case land in the same split.

The split is drawn once from a seed and saved to a file (a run's `Workdir.splits_file`); later
runs and evaluation in that workdir read it back instead of drawing again, so the test patients stay
the test patients even if the split code or the data order changes.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterable

import numpy as np

SPLITS = ("train", "val", "test")


def split_cases(cases: Iterable[str], val_fraction: float, test_fraction: float,
                seed: int) -> dict[str, list[str]]:
    """Shuffle the unique cases with `seed` and cut them into test, val and train (sorted lists).

    Val and test get round(fraction * cases) cases, at least one when their fraction is > 0;
    train keeps at least one case.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1
            and val_fraction + test_fraction < 1):
        raise ValueError(f"val_fraction {val_fraction} and test_fraction {test_fraction} must be "
                         "in [0, 1) with a sum below 1")
    unique = sorted(set(cases))
    order = [unique[i] for i in np.random.default_rng(seed).permutation(len(unique))]
    counts = [max(int(fraction > 0), round(fraction * len(unique)))
              for fraction in (test_fraction, val_fraction)]
    if sum(counts) >= len(unique):
        raise ValueError(f"{len(unique)} cases are too few for a train, val and test split "
                         f"(fractions {val_fraction}, {test_fraction})")
    test, val = order[:counts[0]], order[counts[0]:sum(counts)]
    return {"train": sorted(order[sum(counts):]), "val": sorted(val), "test": sorted(test)}


def load_or_create_splits(path: str | pathlib.Path | None, source: str, cases: Iterable[str],
                          val_fraction: float, test_fraction: float,
                          seed: int) -> dict[str, list[str]]:
    """The split saved at `path` if there is one (checked against the data), else a new one
    (saved to `path` when given)."""
    cases = sorted(set(cases))
    settings = {"source": source, "val_fraction": val_fraction,
                "test_fraction": test_fraction, "seed": seed}
    path = pathlib.Path(path) if path is not None else None
    if path is not None and path.exists():
        saved = json.loads(path.read_text())
        changed = {key: (saved.get(key), value) for key, value in settings.items()
                   if saved.get(key) != value}
        if changed:
            raise ValueError(f"{path} was drawn with other settings ({changed}, saved vs now): "
                             "use a new workdir, or delete it to draw a new split")
        known = {case for split in SPLITS for case in saved[split]}
        unknown = [case for case in cases if case not in known]
        if unknown:
            raise ValueError(f"{path} does not place {len(unknown)} case(s) of the data (e.g. "
                             f"{unknown[:5]}): the data changed; use a new workdir")
        return {split: saved[split] for split in SPLITS}
    splits = split_cases(cases, val_fraction, test_fraction, seed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(settings | splits, indent=1))
        temporary.replace(path)
    return splits
