"""Patient-level splits: seeded, complete, saved once and then read back (and checked)."""

import json

import pytest

from msunet.data import build_source
from msunet.data.splits import SPLITS, load_or_create_splits, split_cases
from msunet.workdir import Workdir
from tests.data.conftest import needs_samples


def test_split_cases_is_seeded_and_complete():
    assert SPLITS == ("train", "val", "test")
    cases = [f"C_{i:04d}" for i in range(40)] * 4  # four views per patient
    one = split_cases(cases, 0.2, 0.1, seed=3)
    assert one == split_cases(reversed(cases), 0.2, 0.1, seed=3)
    assert one != split_cases(cases, 0.2, 0.1, seed=4)
    assert [len(one[s]) for s in ("train", "val", "test")] == [28, 8, 4]
    assert sorted(sum(one.values(), [])) == sorted(set(cases))
    with pytest.raises(ValueError, match="too few"):
        split_cases(["a", "b"], 0.3, 0.3, seed=0)
    with pytest.raises(ValueError, match="with a sum below 1"):
        split_cases(cases, 0.6, 0.5, seed=0)
    assert load_or_create_splits(None, "x", cases, 0.2, 0.1, 3) == one


def test_a_saved_split_is_reused_and_checked_against_settings_and_data(tmp_path):
    cases = [f"C_{i:04d}" for i in range(20)]
    path = tmp_path / "run" / "splits.json"
    first = load_or_create_splits(path, "miniddsm", cases, 0.2, 0.1, 0)
    saved = json.loads(path.read_text())
    assert {split: saved[split] for split in SPLITS} == first
    assert (saved["source"], saved["val_fraction"], saved["test_fraction"], saved["seed"]) == (
        "miniddsm", 0.2, 0.1, 0)
    assert not list(path.parent.glob("*.tmp")), "written to a temporary file, then renamed"
    # The saved split wins over a new draw...
    path.write_text(json.dumps(saved | {"train": saved["test"], "test": saved["train"]}))
    assert load_or_create_splits(path, "miniddsm", cases, 0.2, 0.1, 0)["test"] == first["train"]
    # ...and other settings or unknown cases are refused, not ignored.
    with pytest.raises(ValueError, match="other settings"):
        load_or_create_splits(path, "miniddsm", cases, 0.2, 0.1, 1)
    with pytest.raises(ValueError, match=r"does not place 1 case\(s\) of the data"):
        load_or_create_splits(path, "miniddsm", [*cases, "C_9999"], 0.2, 0.1, 0)


@needs_samples
def test_no_patient_is_in_two_splits_and_the_split_is_saved_and_reused(tmp_path, data_config):
    run = Workdir(tmp_path)
    sources = {split: build_source(data_config, split, **run.data_paths(data_config))
               for split in SPLITS}
    cases = {split: {s.record(i)["case"] for i in range(len(s))} for split, s in sources.items()}
    assert sum(len(s) for s in sources.values()) == 51
    assert all(cases.values())
    assert not (cases["train"] & cases["val"] or cases["train"] & cases["test"]
                or cases["val"] & cases["test"])
    saved = json.loads(run.splits_file.read_text())
    assert set(saved["test"]) == cases["test"]
    # The saved split wins over a new draw, and other settings are refused, not ignored.
    data_config.split_seed = 1
    with pytest.raises(ValueError, match="other settings"):
        build_source(data_config, "train", **run.data_paths(data_config))
    data_config.split_seed = 0
    run.splits_file.write_text(json.dumps(
        saved | {"train": saved["test"], "test": saved["train"]}))
    again = build_source(data_config, "test", **run.data_paths(data_config))
    assert {again.record(i)["case"] for i in range(len(again))} == cases["train"]
