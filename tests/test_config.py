"""The base config and every file in configs/: each is one training accepts, built from the base
config's fields only, naming a registered model, data source and loss."""

import importlib

import pytest

from msunet.config import base_config
from msunet.data import SOURCES
from msunet.losses import LOSSES
from msunet.metrics import TRAIN_METRICS
from msunet.models import MODELS
from msunet.state import create_model
from msunet.training import check_config
from tests.conftest import REPO

CONFIGS = sorted(path.stem for path in (REPO / "configs").glob("*.py"))


def load(name):
    return importlib.import_module(f"configs.{name}").get_config()


def field_paths(tree, prefix=""):
    """Every leaf field of a config as a dotted path."""
    paths = set()
    for key, value in tree.items():
        if isinstance(value, dict):
            paths |= field_paths(value, f"{prefix}{key}.")
        else:
            paths.add(prefix + key)
    return paths


def test_the_config_files_are_found():
    assert {"default", "miniddsm", "smoke"} <= set(CONFIGS)


def test_the_base_config_defaults():
    config = base_config()
    check_config(config)
    assert (config.model.name, config.data.source, config.train.loss,
            config.train.best_metric) == ("multiresunet", "synthetic", "bce", "fg_iou")


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_passes_check_config(name):
    check_config(load(name))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_names_registered_parts(name):
    config = load(name)
    assert config.model.name in MODELS
    assert config.data.source in SOURCES
    assert config.train.loss in LOSSES
    assert config.train.best_metric in ("loss", *TRAIN_METRICS)
    assert type(create_model(config.model)) is MODELS[config.model.name]


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_only_sets_fields_of_the_base_config(name):
    assert field_paths(load(name).to_dict()) == field_paths(base_config().to_dict())
