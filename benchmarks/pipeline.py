"""Images/s of the training pipeline, from the preprocessing cache and from the raw files.

    python -m benchmarks.pipeline --root ../shared/data/mammo_samples --workers 0,2

Runs `train_dataset` (shuffle, augmentation, batching) over Mini-DDSM at the given image size
for each worker-process count, reading either the cache (model-resolution arrays) or the raw
image files (decode + crop + resize + CLAHE per image). Prints a table and writes JSON to
benchmarks/results/pipeline.json. The first batch (worker start-up, cache build) is not timed.
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import tempfile
import time
from typing import Any

import ml_collections
from absl import app, flags

from configs.smoke import get_config
from msunet.data import build_cache, open_source, train_dataset

REPO = pathlib.Path(__file__).resolve().parents[1]
FLAGS = flags.FLAGS
flags.DEFINE_string("root", str(REPO.parent / "shared/data/mammo_samples"), "Mini-DDSM root.")
flags.DEFINE_list("workers", ["0", "2"], "Worker-process counts to time.")
flags.DEFINE_integer("threads", 2, "grain reader threads.")
flags.DEFINE_integer("image_size", 256, "Model resolution.")
flags.DEFINE_integer("batch_size", 8, "Batch size.")
flags.DEFINE_integer("batches", 20, "Timed batches per setting.")
flags.DEFINE_string("out", str(REPO / "benchmarks/results/pipeline.json"), "JSON output.")


def images_per_second(data: ml_collections.ConfigDict, source: Any, batches: int,
                      batch_size: int) -> float:
    """Throughput of `batches` batches after one untimed warm-up batch."""
    iterator = iter(train_dataset(data, source, batch_size, seed=0))
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def main(argv: list[str]) -> None:
    del argv
    data = get_config().data
    data.source, data.root = "miniddsm", FLAGS.root
    data.image_size, data.num_threads = FLAGS.image_size, FLAGS.threads
    raw = open_source(data)
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        cached = build_cache(raw, data, pathlib.Path(workdir) / "cache", data.num_threads)
        build_seconds = time.perf_counter() - start
        rows = []
        for workers in map(int, FLAGS.workers):
            data.num_workers = workers
            for name, source in (("cache", cached), ("raw files", raw)):
                rate = images_per_second(data, source, FLAGS.batches, FLAGS.batch_size)
                rows.append({"source": name, "workers": workers, "images_per_s": round(rate, 1)})
                print(f"{name:>9}  workers {workers}  {rate:8.1f} images/s", flush=True)
    result = {"dataset": f"Mini-DDSM sample, {len(raw)} images ({FLAGS.root})",
              "image_size": FLAGS.image_size, "batch_size": FLAGS.batch_size,
              "threads": FLAGS.threads, "timed_batches": FLAGS.batches,
              "cache_build_s": round(build_seconds, 2), "cpus": os.cpu_count(),
              "machine": platform.processor() or platform.machine(), "rows": rows}
    print(f"\ncache build: {build_seconds:.2f} s for {len(raw)} images\n")
    print("| source | workers | images/s |\n|---|---|---|")
    for row in rows:
        print(f"| {row['source']} | {row['workers']} | {row['images_per_s']} |")
    pathlib.Path(FLAGS.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(FLAGS.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    app.run(main)
