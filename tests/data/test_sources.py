"""The source registry that `data.source` names, and the Source protocol every split is read
through."""

import pytest

from msunet.data import (
    CBISDDSM,
    SOURCES,
    CachedSource,
    FileSource,
    ImageFolder,
    MiniDDSM,
    Source,
    SyntheticMammograms,
    build_cache,
    check_source_name,
)
from tests.data.conftest import write_folder


def test_the_registry_names_every_source():
    assert SOURCES == {"synthetic": SyntheticMammograms, "miniddsm": MiniDDSM, "cbis": CBISDDSM,
                       "folder": ImageFolder}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_source_is_built_from_a_config_and_names_its_records(name):
    source_class = check_source_name(name)
    assert source_class is SOURCES[name]
    assert callable(source_class.from_config) and callable(source_class.record)
    assert source_class.preprocessed is False, "raw images: the pipeline or cache preprocesses"
    assert issubclass(source_class, FileSource) == (name != "synthetic")


def test_an_unknown_source_name_lists_the_choices():
    with pytest.raises(ValueError, match=r"unknown data.source 'kaggle'; expected one of "
                                         r"\['cbis', 'folder', 'miniddsm', 'synthetic'\]"):
        check_source_name("kaggle")


@pytest.mark.parametrize("name", sorted(set(SOURCES) - {"synthetic"}))
def test_a_file_source_needs_its_root(smoke_config, name):
    data = smoke_config.data.copy_and_resolve_references()
    data.source = name
    with pytest.raises(ValueError, match=f"data.source='{name}' needs data.root"):
        SOURCES[name].from_config(data)


def test_synthetic_file_and_cached_sources_satisfy_the_protocol(smoke_config, tmp_path):
    synthetic = SyntheticMammograms.from_config(smoke_config.data, "train")
    folder = ImageFolder(*write_folder(tmp_path / "data", count=3))
    cached = build_cache(folder, smoke_config.data, tmp_path / "cache")
    assert isinstance(cached, CachedSource)
    for source in (synthetic, folder, cached):
        assert isinstance(source, Source), source
        assert len(source) > 0 and {"path", "case"} <= set(source.record(0))
        assert {"image", "mask"} <= set(source[0])
    assert (synthetic.preprocessed, folder.preprocessed, cached.preprocessed) == (False, False,
                                                                                   True)
    assert not isinstance(object(), Source)
