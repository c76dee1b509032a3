"""Preprocess a real dataset into the cache before training (train also does it on demand).

    python -m msunet.prepare --config configs/miniddsm.py --workdir runs/miniddsm \\
        --config.data.root=/data/miniddsm

Decodes every image once, crops, resizes and applies CLAHE, and stores the result under
`data.cache_dir` (default `<workdir>/cache`), keyed by the files and the preprocessing
settings; writes the patient split to `<workdir>/splits.json` and prints what it found.
"""

from __future__ import annotations

import pathlib
import sys
import time

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from msunet.data.cache import build_cache, cache_root
from msunet.data.pipeline import SPLITS, open_source
from msunet.data.splits import load_or_create_splits


def prepare(data: ml_collections.ConfigDict, workdir: str | pathlib.Path | None) -> dict:
    """Build (or find) the cache and the split; returns counts per split and the cache path."""
    start = time.perf_counter()
    source = open_source(data)
    cached = build_cache(source, data, cache_root(data, workdir), data.num_threads)
    splits = load_or_create_splits(workdir, data.source, (e.case for e in source.entries),
                                   data.val_fraction, data.test_fraction, data.split_seed)
    cases = [cached.record(i)["case"] for i in range(len(cached))]
    return {"cache": str(cached.directory), "images": len(cached),
            "skipped": len(cached.skipped), "seconds": time.perf_counter() - start,
            "splits": {split: {"cases": len(splits[split]),
                               "images": sum(case in set(splits[split]) for case in cases)}
                       for split in SPLITS}}


FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory: the cache (unless data.cache_dir is set) "
                    "and splits.json go here.")
config_flags.DEFINE_config_file("config", None, "A config file from configs/.",
                                lock_config=True)
flags.mark_flags_as_required(["config"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    if FLAGS.workdir is None and not FLAGS.config.data.cache_dir:
        sys.exit("error: give --workdir or --config.data.cache_dir (where the cache goes)")
    try:
        summary = prepare(FLAGS.config.data, FLAGS.workdir)
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    print(f"cache {summary['cache']}: {summary['images']} images "
          f"({summary['skipped']} skipped) in {summary['seconds']:.1f} s")
    for split, counts in summary["splits"].items():
        print(f"  {split}: {counts['images']} images of {counts['cases']} cases")


if __name__ == "__main__":
    app.run(main)
