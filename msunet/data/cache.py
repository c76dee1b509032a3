"""The preprocessing cache: every image of a source cropped, resized and CLAHE'd once, on disk.

Decoding full-size mammograms costs more than all augmentation together, so training reads
model-resolution arrays instead. A cache lives in `<cache_dir>/<fingerprint>/` with
`images.npy`, `masks.npy` (uint8, N x S x S) and `records.json` (path, case, metadata and
crop geometry per row, plus the skipped files). The fingerprint hashes the source's files
(path, size, mtime) and the preprocessing config, so a changed file or setting builds a new
cache. It is written into a temporary folder and renamed into place when complete, so a
half-written cache is never used.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np

from msunet.data.files import BadSampleError, FileSource, warn_skipped
from msunet.data.preprocess import Preprocess

CACHE_VERSION = 2  # bump when the preprocessing code changes what it produces
PREPROCESS_FIELDS = ("image_size", "crop_breast", "canonical_side", "clahe_clip_limit",
                     "clahe_tile_grid", "on_bad_sample")
RECORDS_FILE = "records.json"
_warned: set[str] = set()  # caches whose skipped files this process has already reported


def fingerprint(source: FileSource, data: ml_collections.ConfigDict) -> str:
    """A short hash of the source's files and the preprocessing settings."""
    key = {"version": CACHE_VERSION, "source": type(source).__name__,
           "files": source.fingerprint_items(),
           "preprocess": {field: data[field] for field in PREPROCESS_FIELDS}}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def default_cache_dir(data: ml_collections.ConfigDict) -> pathlib.Path:
    """Where the cache goes without a run directory: `data.cache_dir`, else a folder in the
    system's temp dir (a run uses `Workdir.cache_dir`)."""
    if data.cache_dir:
        return pathlib.Path(data.cache_dir).expanduser()
    return pathlib.Path(tempfile.gettempdir()) / "msunet-cache"


class CachedSource:
    """A grain source over a cache (or some of its rows): {'image', 'mask'} uint8 (S, S, 1).

    The arrays are memory-mapped on first use in each process, so pickling the source for
    grain worker processes copies no pixels. `record(i)` gives row i's path, case and geometry.
    """

    preprocessed = True  # the pipeline must not preprocess these records again

    def __init__(self, directory: str | pathlib.Path,
                 indices: Sequence[int] | None = None) -> None:
        self.directory = pathlib.Path(directory)
        info = json.loads((self.directory / RECORDS_FILE).read_text())
        self.records: list[dict[str, Any]] = info["records"]
        self.skipped: list[str] = info["skipped"]
        self.indices = list(range(len(self.records)) if indices is None else indices)
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    def _open(self) -> tuple[np.ndarray, np.ndarray]:
        if self._arrays is None:
            self._arrays = tuple(np.load(self.directory / f"{name}.npy", mmap_mode="r",
                                         allow_pickle=False) for name in ("images", "masks"))
        return self._arrays

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_arrays": None}

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        row = self.indices[index]
        images, masks = self._open()
        return {"image": np.array(images[row])[..., None], "mask": np.array(masks[row])[..., None]}

    def record(self, index: int) -> dict[str, Any]:
        """Path, case, metadata and crop geometry of item `index`."""
        return self.records[self.indices[index]]

    def subset(self, indices: Sequence[int]) -> CachedSource:
        """The same cache restricted to rows `indices` (positions in this source)."""
        return CachedSource(self.directory, [self.indices[i] for i in indices])

    def __repr__(self) -> str:
        return f"CachedSource({self.directory}, {len(self)} images)"


def _prepare(source: FileSource, preprocess: Preprocess, index: int) -> Any:
    """Row `index` preprocessed, or the BadSampleError that stops it."""
    path = source.entries[index].image
    try:
        record = source[index]
        image, mask, geometry = preprocess.prepare(record["image"], record["mask"], str(path))
    except BadSampleError as error:
        return error
    except Exception as error:  # say which file, whatever failed
        raise RuntimeError(f"{path}: preprocessing failed: {error!r}") from error
    meta = {key: value for key, value in record.items() if key not in ("image", "mask")}
    return image, mask, meta | {"geometry": dataclasses.asdict(geometry)}


def build_cache(source: FileSource, data: ml_collections.ConfigDict,
                root: str | pathlib.Path, num_threads: int = 2) -> CachedSource:
    """The cache of `source` under `root`, preprocessing every image first if it is not there.

    Bad samples raise (data.on_bad_sample="error") or are left out with one warning ("skip").
    """
    root = pathlib.Path(root)
    final = root / fingerprint(source, data)
    if not (final / RECORDS_FILE).is_file():
        root.mkdir(parents=True, exist_ok=True)
        temporary = root / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        temporary.mkdir()
        try:
            _write(source, data, temporary, num_threads)
            if final.exists():  # damaged by hand (renames only ever bring complete caches)
                shutil.rmtree(final)
            try:
                temporary.rename(final)
            except OSError:  # another process finished the same cache first
                if not (final / RECORDS_FILE).is_file():
                    raise
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
        _warned.add(str(final))
    cached = CachedSource(final)
    if str(final) not in _warned:
        warn_skipped(f"{source.name} (cache {final})", cached.skipped)
        _warned.add(str(final))
    return cached


def _write(source: FileSource, data: ml_collections.ConfigDict, folder: pathlib.Path,
           num_threads: int) -> None:
    preprocess = Preprocess.from_config(data)
    shape = (len(source), data.image_size, data.image_size)
    images = np.lib.format.open_memmap(folder / "images.npy", "w+", np.uint8, shape)
    masks = np.lib.format.open_memmap(folder / "masks.npy", "w+", np.uint8, shape)
    records, skipped = [], list(source.skipped)
    with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
        results = pool.map(lambda index: _prepare(source, preprocess, index), range(len(source)))
        for result in results:
            if isinstance(result, BadSampleError):
                if data.on_bad_sample != "skip":
                    raise result
                skipped.append(str(result))
                continue
            images[len(records)], masks[len(records)] = result[0], result[1]
            records.append(result[2])
    warn_skipped(source.name, skipped)
    if not records:
        raise ValueError(f"{source.name}: every image was skipped as bad")
    images.flush()
    masks.flush()
    del images, masks
    # Rows past len(records) (left by skipped images) stay zero and are never indexed.
    (folder / RECORDS_FILE).write_text(json.dumps(
        {"source": source.name, "config": {field: data[field] for field in PREPROCESS_FIELDS},
         "records": records, "skipped": skipped}, indent=1, default=str))
