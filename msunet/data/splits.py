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
ALL = "all"  # every image of a dataset on disk, unsplit: scoring a run on another dataset


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


def kfold_cases(cases: Iterable[str], folds: int, val_fraction: float,
                seed: int) -> list[dict[str, list[str]]]:
    """Patient-level k-fold cross-validation: the unique cases, shuffled with `seed`, dealt into
    `folds` test folds of (nearly) equal size; in fold k the other cases are cut into val
    (round(val_fraction * n), at least one when val_fraction > 0) and train. Every case is in
    exactly one test fold, and never in two splits of one fold."""
    unique = sorted(set(cases))
    if not 2 <= folds <= len(unique):
        raise ValueError(f"{folds} folds need between 2 and {len(unique)} (the number of cases)")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction {val_fraction} must be in [0, 1)")
    order = [unique[i] for i in np.random.default_rng(seed).permutation(len(unique))]
    plan = []
    for fold in range(folds):
        test = order[fold::folds]
        rest = [case for case in order if case not in set(test)]
        count = max(int(val_fraction > 0), round(val_fraction * len(rest)))
        if count >= len(rest):
            raise ValueError(f"{len(unique)} cases are too few for {folds} folds with a "
                             f"validation part ({val_fraction} of the training cases)")
        plan.append({"train": sorted(rest[count:]), "val": sorted(rest[:count]),
                     "test": sorted(test)})
    return plan


def save_splits(path: str | pathlib.Path, settings: dict[str, object],
                splits: dict[str, list[str]]) -> None:
    """Write a splits file atomically (what `load_or_create_splits` reads back)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(settings | splits, indent=1))
    temporary.replace(path)


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
        save_splits(path, settings, splits)
    return splits
