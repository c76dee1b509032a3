"""msunet.prepare: the cache and patient split of a file dataset, built before training and then
read by it (`python -m msunet.prepare`, run in process here)."""

import pathlib

import pytest

from msunet.data import build_source
from msunet.prepare import main as prepare_main
from msunet.prepare import prepare
from msunet.training import train_and_evaluate
from msunet.workdir import Workdir
from tests.conftest import REPO, SAMPLES
from tests.data.conftest import folder_data, needs_samples, write_folder

SMOKE = str(REPO / "configs" / "smoke.py")


def test_prepare_builds_the_cache_and_saves_the_split_in_the_workdir(smoke_config, tmp_path):
    data = folder_data(smoke_config, *write_folder(tmp_path / "data", count=8))
    run = Workdir(tmp_path / "run")
    summary = prepare(data, run.root)
    assert (summary["images"], summary["skipped"]) == (8, 0)
    assert pathlib.Path(summary["cache"]).parent == run.cache_dir(data)
    assert run.splits_file.is_file()
    assert {split: counts["images"] for split, counts in summary["splits"].items()} == {
        "train": 6, "val": 1, "test": 1}
    assert sum(counts["cases"] for counts in summary["splits"].values()) == 8
    # Training reads what prepare wrote: the same cache and split.
    source = build_source(data, "test", **run.data_paths(data))
    assert source.directory == pathlib.Path(summary["cache"])
    assert prepare(data, run.root)["cache"] == summary["cache"]


def test_without_a_workdir_the_cache_goes_to_data_cache_dir(smoke_config, tmp_path):
    data = folder_data(smoke_config, *write_folder(tmp_path / "data", count=8))
    data.cache_dir = str(tmp_path / "shared")
    summary = prepare(data, None)
    assert pathlib.Path(summary["cache"]).parent == tmp_path / "shared"
    assert summary["images"] == 8 and not list(tmp_path.rglob("splits.json"))


def test_the_command_needs_somewhere_to_put_the_cache():
    with pytest.raises(SystemExit, match="error: give --workdir or --config.data.cache_dir"):
        prepare_main(["prepare", "--config", SMOKE])


def test_the_command_prints_what_it_found(tmp_path, capsys):
    images, masks = write_folder(tmp_path / "data", count=8)
    argv = ["prepare", "--config", SMOKE, "--config.data.source=folder",
            f"--config.data.root={images}", f"--config.data.masks_dir={masks}",
            "--workdir", str(tmp_path / "run")]
    prepare_main(argv)
    out = capsys.readouterr().out
    assert "8 images (0 skipped)" in out and "train: 6 images of 6 cases" in out
    assert Workdir(tmp_path / "run").splits_file.is_file()


@needs_samples
def test_smoke_training_on_the_miniddsm_sample_and_prepare(smoke_config, tmp_path, capsys):
    argv = ["prepare", "--config", SMOKE, "--config.data.source=miniddsm",
            f"--config.data.root={SAMPLES}", "--workdir", str(tmp_path)]
    prepare_main(argv)
    assert "51 images (0 skipped)" in capsys.readouterr().out
    config = smoke_config.copy_and_resolve_references()
    config.data.source, config.data.root = "miniddsm", str(SAMPLES)
    config.model.name = "unet"  # the cache and split are the point; U-Net compiles fast
    train_and_evaluate(config, tmp_path)
    assert "on 36 miniddsm images" in capsys.readouterr().out
    run = Workdir(tmp_path)
    assert len(list(run.cache_dir(config.data).iterdir())) == 1, "train reused prepare's cache"
    assert run.splits_file.is_file() and run.metrics_file.is_file()
