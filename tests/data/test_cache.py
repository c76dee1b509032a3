"""The preprocessing cache: built once, keyed by files and settings, never used half-written,
read by row (also in grain worker processes), and its skipped files reported once."""

import logging
import pathlib
import pickle
import tempfile

import numpy as np

from msunet.data import CachedSource, ImageFolder, Preprocess, build_cache, build_source
from msunet.data.cache import default_cache_dir
from msunet.workdir import Workdir
from tests.data.conftest import CASE, FILES, needs_samples, small_miniddsm, write_folder


def test_default_cache_dir_is_the_configured_one_or_a_temp_folder(smoke_config, tmp_path):
    data = smoke_config.data.copy_and_resolve_references()
    assert default_cache_dir(data) == pathlib.Path(tempfile.gettempdir()) / "msunet-cache"
    data.cache_dir = str(tmp_path / "shared")
    assert default_cache_dir(data) == tmp_path / "shared"


def test_a_cache_is_built_once_and_read_by_row(smoke_config, tmp_path):
    folder = ImageFolder(*write_folder(tmp_path / "data", count=4))
    data = smoke_config.data
    cached = build_cache(folder, data, tmp_path / "cache")
    assert isinstance(cached, CachedSource) and cached.preprocessed and len(cached) == 4
    assert cached.directory.parent == tmp_path / "cache" and cached.skipped == []
    item = cached[2]
    assert item["image"].shape == item["mask"].shape == (64, 64, 1)
    assert item["image"].dtype == item["mask"].dtype == np.uint8
    expected = Preprocess.from_config(data).map(folder[2])
    np.testing.assert_array_equal(item["image"], expected["image"])
    np.testing.assert_array_equal(item["mask"], expected["mask"])
    record = cached.record(2)
    assert (record["path"], record["case"]) == (folder.record(2)["path"], "scan2")
    assert set(record["geometry"]) == {"original_shape", "box", "flipped"}
    subset = cached.subset([3, 1])
    assert len(subset) == 2 and subset.record(0) == cached.record(3)
    np.testing.assert_array_equal(subset[1]["image"], cached[1]["image"])
    copied = pickle.loads(pickle.dumps(cached))  # what a grain worker process receives
    np.testing.assert_array_equal(copied[2]["image"], item["image"])
    assert build_cache(folder, data, tmp_path / "cache").directory == cached.directory


@needs_samples
def test_cache_is_reused_rebuilt_on_change_and_never_used_half_written(tmp_path, data_config,
                                                                       samples):
    root = tmp_path / "cache"
    first = build_cache(samples, data_config, root)
    assert len(first) == 51 and first[0]["image"].shape == (64, 64, 1)
    stamp = (first.directory / "images.npy").stat().st_mtime_ns
    assert build_cache(samples, data_config, root).directory == first.directory
    assert (first.directory / "images.npy").stat().st_mtime_ns == stamp
    expected = Preprocess.from_config(data_config).map(samples[5])
    np.testing.assert_array_equal(first[5]["image"], expected["image"])
    np.testing.assert_array_equal(first[5]["mask"], expected["mask"])
    np.load(first.directory / "masks.npy", allow_pickle=False)

    data_config.clahe_clip_limit = 3.0
    changed = build_cache(samples, data_config, root)
    assert changed.directory != first.directory
    # A folder without records.json (a crashed build) is not a cache: it is built again.
    (changed.directory / "records.json").unlink()
    rebuilt = build_cache(samples, data_config, root)
    assert rebuilt.directory == changed.directory and len(rebuilt) == 51
    assert not list(root.glob(".*tmp*")), "temporary build folders are removed"


@needs_samples
def test_skip_drops_bad_samples_with_one_warning_listing_them(tmp_path, data_config, caplog):
    root = small_miniddsm(tmp_path / "data", rows=[["Benign\\0029\\C_0029_1.GONE.png", "", "",
                                                    "", "Benign", "-", "-", 66, 3]])
    (root / CASE / f"{FILES[2]}.png").write_bytes(b"broken")
    data_config.root = str(root)
    data_config.val_fraction = data_config.test_fraction = 0.0
    data_config.on_bad_sample = "skip"
    paths = Workdir(tmp_path / "work").data_paths(data_config)
    with caplog.at_level(logging.WARNING):
        source = build_source(data_config, "train", **paths)
        build_source(data_config, "train", **paths)  # reused: no second warning
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warnings) == 1
    assert "skipped 2 bad sample(s)" in warnings[0]
    assert "C_0029_1.GONE.png" in warnings[0] and f"{FILES[2]}.png" in warnings[0]
    assert len(source) == 3
    assert {pathlib.Path(source.record(i)["path"]).stem for i in range(3)} == {
        FILES[0], FILES[1], FILES[3]}
