"""Keras weights imported by msunet.convert give the Keras model's probabilities."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from msunet import convert
from msunet.models import MultiResUNet
from tests.conftest import REPO, run_module

keras = pytest.importorskip("keras", reason="the Keras reference needs the bench extra: "
                            "pip install -e '.[bench]'")
pytest.importorskip("tensorflow", reason="the Keras reference needs the bench extra")

from benchmarks import keras_reference  # noqa: E402

SIZE, WIDTH = 64, 4
KERAS_NAMES = {"InputLayer": "input_layer", "Conv2D": "conv2d", "Activation": "activation",
               "BatchNormalization": "batch_normalization", "Add": "add",
               "Concatenate": "concatenate", "MaxPooling2D": "max_pooling2d",
               "Conv2DTranspose": "conv2d_transpose"}


def randomise(model, seed=0):
    """Non-trivial BatchNorm statistics and affine terms, and transposed-conv biases."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            width = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(0, 0.3, width))
            layer.moving_variance.assign(rng.uniform(0.3, 2.0, width))
            layer.beta.assign(rng.normal(0, 0.2, width))
            if layer.scale:
                layer.gamma.assign(rng.uniform(0.7, 1.3, width))
        elif isinstance(layer, keras.layers.Conv2DTranspose):
            layer.bias.assign(rng.normal(0, 0.2, layer.bias.shape))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A narrow Keras MultiResUNet with random statistics, saved in every supported format."""
    keras.utils.set_random_seed(0)
    model = keras_reference.multiresunet(SIZE, SIZE, 1, base_filters=WIDTH)
    randomise(model)
    images = np.random.default_rng(1).uniform(0, 1, (2, SIZE, SIZE, 1)).astype(np.float32)
    probabilities = np.asarray(model([images], training=False))
    folder = tmp_path_factory.mktemp("keras")
    files = {"weights.h5": folder / "m.weights.h5", "keras": folder / "m.keras",
             "legacy h5": folder / "m.h5"}
    model.save_weights(files["weights.h5"])
    model.save(files["keras"])
    model.save(files["legacy h5"])
    return {"model": model, "images": images, "probabilities": probabilities, "files": files}


def flax_probabilities(variables, images):
    fields = convert.model_fields(variables)
    model = MultiResUNet(base_filters=fields["base_filters"], out_channels=fields["out_channels"])
    return np.asarray(jax.nn.sigmoid(model.apply(variables, images, train=False)))


def test_layer_order_is_the_keras_model_order(reference):
    keras_layers = [(KERAS_NAMES[type(layer).__name__], [tuple(w.shape) for w in layer.weights])
                    for layer in reference["model"].layers]
    ours = [(layer.kind, list(layer.shapes)) for layer in convert.multiresunet_layers(WIDTH)]
    assert ours == keras_layers


@pytest.mark.parametrize("source", ["model", "weights.h5", "keras", "legacy h5"])
def test_flax_probabilities_equal_keras(reference, source):
    expected = reference["probabilities"]
    assert expected.std() > 1e-3, "the reference output must not be constant"
    variables = convert.from_keras(reference["model"] if source == "model"
                                   else reference["files"][source])
    assert convert.model_fields(variables) == {"base_filters": WIDTH, "in_channels": 1,
                                               "out_channels": 1}
    np.testing.assert_allclose(flax_probabilities(variables, reference["images"]), expected,
                               atol=1e-4, rtol=0)


def test_another_architecture_names_the_first_mismatch(tmp_path):
    path = tmp_path / "unet.weights.h5"
    keras_reference.unet(32, 32, 1, base_filters=4).save_weights(path)
    with pytest.raises(ValueError, match=r"weighted layer 0 \('conv2d'\).*MultiResBlock_0"):
        convert.from_keras(path)


def test_another_alpha_is_reported(tmp_path):
    path = tmp_path / "wide.weights.h5"
    keras_reference.multiresunet(32, 32, 1, base_filters=4, alpha=2.5).save_weights(path)
    with pytest.raises(ValueError, match="do not match MultiResUNet: weighted layer"):
        convert.from_keras(path)
    assert convert.model_fields(convert.from_keras(path, alpha=2.5))["base_filters"] == 4


def test_cli_writes_a_workdir_that_restores_the_weights(reference, tmp_path, smoke_config):
    from msunet.state import create_train_state
    from msunet.workdir import RunMeta, Workdir

    run = Workdir(tmp_path / "imported")
    args = ("--keras", str(reference["files"]["weights.h5"]), "--output", str(run.root),
            "--config", "configs/smoke.py")
    process = run_module("msunet.convert", *args)
    assert process.returncode == 0, process.stderr
    saved = json.loads(run.config_file.read_text())
    assert saved["model"]["name"] == "multiresunet"
    assert saved["model"]["base_filters"] == WIDTH
    assert saved["data"]["image_size"] == smoke_config.data.image_size
    checkpointer = run.checkpointer()
    assert checkpointer.latest_step() == 0 and checkpointer.latest_step("best") == 0
    fresh = create_train_state(smoke_config, jax.random.key(1))
    state = checkpointer.restore(fresh, kind="best").state
    # The bookkeeping msunet.train resumes from: nothing validated or skipped yet.
    assert RunMeta.from_json(checkpointer.restore(fresh).meta) == RunMeta()
    checkpointer.close()
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    np.testing.assert_allclose(flax_probabilities(variables, reference["images"]),
                               reference["probabilities"], atol=1e-4, rtol=0)

    again = run_module("msunet.convert", *args)
    assert again.returncode != 0 and "already holds a run" in again.stderr


def test_reading_files_never_imports_tensorflow(reference):
    code = ("import sys; from msunet.convert import from_keras; "
            f"from_keras({str(reference['files']['weights.h5'])!r}); "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    process = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                             text=True, timeout=300)
    assert process.returncode == 0, process.stderr
    assert process.stdout.strip() == "[]"


def test_missing_h5py_gives_install_hint(reference, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"\.\[bench\]"):
        convert.from_keras(reference["files"]["weights.h5"])


def test_a_file_that_is_not_keras_is_rejected(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("not weights")
    with pytest.raises(ValueError, match="neither an HDF5 weights file nor a .keras archive"):
        convert.from_keras(path)
