"""Preprocess a real dataset into the cache before training (train also does it on demand).

    python -m msunet.prepare --config configs/miniddsm.py --workdir runs/miniddsm \\
        --config.data.root=/data/miniddsm

Decodes every image once, crops, resizes and applies CLAHE, and stores the result under
`data.cache_dir` (default `<workdir>/cache`), keyed by the files and the preprocessing
settings; writes the patient split to `<workdir>/splits.json` and prints what it found.
Without --workdir, the cache goes to `data.cache_dir` and the split is drawn but not saved.
"""

from __future__ import annotations

import pathlib
import sys
import time

import ml_collections
from absl import flags
from ml_collections import config_flags

from msunet import cli
from msunet.data.cache import build_cache, default_cache_dir
from msunet.data.pipeline import open_source
from msunet.data.splits import SPLITS, load_or_create_splits
from msunet.workdir import Workdir


def prepare(data: ml_collections.ConfigDict, workdir: str | pathlib.Path | None) -> dict:
    """Build (or find) the cache and the split; returns counts per split and the cache path."""
    start = time.perf_counter()
    run = Workdir(workdir) if workdir is not None else None
    source = open_source(data)
    cached = build_cache(source, data, run.cache_dir(data) if run else default_cache_dir(data),
                         data.num_threads)
    splits = load_or_create_splits(run.splits_file if run else None, data.source,
                                   (e.case for e in source.entries),
                                   data.val_fraction, data.test_fraction, data.split_seed)
    cases = [cached.record(i)["case"] for i in range(len(cached))]
    members = {split: set(splits[split]) for split in SPLITS}
    return {"cache": str(cached.directory), "images": len(cached),
            "skipped": len(cached.skipped), "seconds": time.perf_counter() - start,
            "splits": {split: {"cases": len(members[split]),
                               "images": sum(case in members[split] for case in cases)}
                       for split in SPLITS}}


def define_flags(values: flags.FlagValues, argv: list[str]) -> None:
    """The command line of `python -m msunet.prepare`."""
    flags.DEFINE_string("workdir", None, "Run directory: the cache (unless data.cache_dir is set) "
                        "and splits.json go here.", flag_values=values)
    config_flags.DEFINE_config_file("config", None, "A config file from configs/.",
                                    flag_values=values, sys_argv=argv, lock_config=True)
    flags.mark_flags_as_required(["config"], flag_values=values)


def main(argv: list[str]) -> None:
    """Build the cache and split, and print what was found."""
    args = cli.parse(define_flags, argv)
    if args.workdir is None and not args.config.data.cache_dir:
        sys.exit("error: give --workdir or --config.data.cache_dir (where the cache goes)")
    with cli.errors():
        summary = prepare(args.config.data, args.workdir)
    print(f"cache {summary['cache']}: {summary['images']} images "
          f"({summary['skipped']} skipped) in {summary['seconds']:.1f} s")
    for split, counts in summary["splits"].items():
        print(f"  {split}: {counts['images']} images of {counts['cases']} cases")


if __name__ == "__main__":
    main(sys.argv)
