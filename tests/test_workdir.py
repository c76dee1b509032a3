"""Workdir: every path of a run directory, its saved config (and what a resumed run may change),
and RunMeta, the loop bookkeeping saved with each latest checkpoint."""

import json
import math
import pathlib
import re

import pytest

from msunet.workdir import BestCheckpoint, EarlyStoppingState, RunMeta, Workdir

# --- paths -------------------------------------------------------------------------------------


def test_every_path_of_a_run_comes_from_the_workdir(tmp_path, smoke_config):
    run = Workdir(str(tmp_path))
    assert run.root == tmp_path
    assert (run.config_file, run.splits_file, run.checkpoints_dir, run.best_dir,
            run.metrics_file, run.tensorboard_dir, run.curves_file) == (
        tmp_path / "config.json", tmp_path / "splits.json", tmp_path / "checkpoints",
        tmp_path / "best", tmp_path / "metrics.jsonl", tmp_path / "tensorboard",
        tmp_path / "training_curves.png")
    assert run.eval_dir("val", "latest") == tmp_path / "eval" / "val_latest"
    data = smoke_config.data.copy_and_resolve_references()
    assert run.cache_dir(data) == tmp_path / "cache"
    assert run.data_paths(data) == {"cache_dir": tmp_path / "cache",
                                    "splits_file": tmp_path / "splits.json"}
    data.cache_dir = "~/shared-cache"
    assert run.cache_dir(data) == pathlib.Path("~/shared-cache").expanduser()


def test_a_run_is_recognised_by_its_config_or_checkpoints(tmp_path, smoke_config):
    run = Workdir(tmp_path / "new" / "run")
    assert not run.holds_run()
    run.save_config(smoke_config)
    assert run.holds_run() and run.config_file.is_file()
    assert run.load_config().model.to_dict() == smoke_config.model.to_dict()
    only_checkpoints = Workdir(tmp_path / "other")
    only_checkpoints.checkpoints_dir.mkdir(parents=True)
    assert only_checkpoints.holds_run()


def test_the_checkpointer_reads_the_runs_checkpoint_folders(smoke_run):
    checkpointer = Workdir(smoke_run).checkpointer()
    try:
        assert checkpointer.latest_step() == 8
        assert checkpointer.latest_step("best") in (4, 8)
    finally:
        checkpointer.close()


# --- the saved config --------------------------------------------------------------------------

def test_load_config_names_what_is_missing(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError, match=re.escape(f"workdir {missing} does not exist")):
        Workdir(missing).load_config()
    with pytest.raises(FileNotFoundError, match=r"config.json not found: .* is not a training "
                                                r"workdir"):
        Workdir(tmp_path).load_config()


def test_load_config_gives_fields_added_since_the_run_their_defaults(tmp_path, smoke_config):
    saved = smoke_config.to_dict()
    del saved["eval"]
    del saved["train"]["loss"]
    Workdir(tmp_path).config_file.write_text(json.dumps(saved))
    config = Workdir(tmp_path).load_config()
    assert config.eval.threshold == 0.5 and config.train.loss == "bce"
    assert config.model.base_filters == smoke_config.model.base_filters
    assert config.train.num_steps == smoke_config.train.num_steps


def test_a_workdir_of_another_shape_is_refused(smoke_config, tmp_path):
    Workdir(tmp_path).save_config(smoke_config)
    other = smoke_config.copy_and_resolve_references()
    other.data.image_size = 96
    with pytest.raises(ValueError, match="data.image_size: 64 in the workdir, 96 now"):
        Workdir(tmp_path).check_compatible(other)


@pytest.mark.parametrize("section, field, value, conflict", [
    ("model", "name", "unet", "model.name: 'multiresunet' in the workdir, 'unet' now"),
    ("model", "base_filters", 8, "model.base_filters: 4 in the workdir, 8 now"),
    ("data", "image_size", 96, "data.image_size: 64 in the workdir, 96 now"),
])
def test_resuming_with_another_shape_is_refused(smoke_config, tmp_path, section, field, value,
                                                conflict):
    run = Workdir(tmp_path)
    run.save_config(smoke_config)
    other = smoke_config.copy_and_resolve_references()
    other[section][field] = value
    with pytest.raises(ValueError, match="was written by a run with another shape") as error:
        run.check_compatible(other)
    assert conflict in str(error.value) and str(run.config_file) in str(error.value)


@pytest.mark.parametrize("section, field, value", [
    ("model", "bn_momentum", 0.99), ("model", "head_bias_init", 0.0),
    ("model", "dtype", "bfloat16"), ("optim", "learning_rate", 1e-4),
    ("train", "num_steps", 100), ("data", "num_train", 32),
])
def test_settings_that_keep_the_variables_may_change_on_resume(smoke_config, tmp_path, section,
                                                               field, value):
    run = Workdir(tmp_path)
    other = smoke_config.copy_and_resolve_references()
    other[section][field] = value
    run.check_compatible(other)  # nothing saved yet: nothing to conflict with
    run.save_config(smoke_config)
    run.check_compatible(other)
    run.check_compatible(smoke_config)


# --- RunMeta -----------------------------------------------------------------------------------

def test_run_meta_starts_empty_and_round_trips_through_json():
    fresh = RunMeta()
    assert fresh.early_stopping == EarlyStoppingState(best_metric=math.inf, patience_count=0,
                                                      should_stop=False)
    assert fresh.best == BestCheckpoint(step=None, value=None, metrics={})
    assert fresh.skipped_steps == []
    assert RunMeta.from_json(json.loads(json.dumps(fresh.to_json()))) == fresh  # inf survives

    meta = RunMeta()
    meta.early_stopping.patience_count = 2
    meta.best = BestCheckpoint(step=40, value=0.31, metrics={"loss": 0.1, "fg_iou": 0.31})
    meta.skipped_steps.append(17)
    assert meta != fresh, "each record has its own counters"
    saved = json.loads(json.dumps(meta.to_json()))
    assert saved["best"] == {"step": 40, "value": 0.31, "metrics": {"loss": 0.1, "fg_iou": 0.31}}
    assert RunMeta.from_json(saved) == meta
    del saved["skipped_steps"]  # a record written before steps could be skipped
    assert RunMeta.from_json(saved).skipped_steps == []
