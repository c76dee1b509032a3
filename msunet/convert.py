"""Import the authors' Keras MultiResUNet weights into msunet.

    python -m msunet.convert --keras model.weights.h5 --output DIR [--config configs/default.py]

writes a workdir (config.json and an orbax checkpoint under best/ and checkpoints/) that the
evaluate and predict commands read, and that `msunet.train` fine-tunes from. In Python,
`from_keras(path_or_model)` returns Flax variables for `MultiResUNet`.

Keras files do not name their layers reproducibly (a `.weights.h5` stores `conv2d`, `conv2d_1`,
... numbered per layer class in the model's layer order; legacy `.h5` files store whatever names
the session gave), so layers are matched by order: this module rebuilds the reference's layer
graph and sorts it the way Keras orders a functional model's layers (deepest from the output
first, ties in depth-first order from the output). Files are read with h5py; TensorFlow is never
imported.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pathlib
import re
import sys
import zipfile
from collections.abc import Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags
from ml_collections import config_flags

from msunet import cli
from msunet import data as data_lib
from msunet.config import base_config
from msunet.models.multiresunet import MultiResUNet, multires_widths
from msunet.optim import create_optimizer
from msunet.state import TrainState, create_model
from msunet.workdir import RunMeta, Workdir

PathLike = str | os.PathLike
# The layers with variables, by the snake-case class name Keras 3 gives their weight groups.
WEIGHTED_KINDS = frozenset({"conv2d", "batch_normalization", "conv2d_transpose"})


@dataclasses.dataclass(frozen=True)
class KerasLayer:
    """One layer of the reference graph: its Keras kind, inputs and Flax counterpart."""

    kind: str
    inputs: tuple[int, ...] = ()
    flax_path: tuple[str, ...] = ()
    # Expected Keras variable shapes, in Keras' storage order (for weighted layers).
    shapes: tuple[tuple[int, ...], ...] = ()
    scale: bool = False  # BatchNormalization with gamma

    def describe(self) -> str:
        return f"{self.kind} {'/'.join(self.flax_path)} with variables {list(self.shapes)}"


class _Graph:
    """Records the layers of the authors' MultiResUnet() in their functional-graph form."""

    def __init__(self) -> None:
        self.layers: list[KerasLayer] = []
        self.width: dict[int, int] = {}

    def add(self, kind: str, inputs: Sequence[int], width: int, path: tuple[str, ...] = (),
            shapes: tuple[tuple[int, ...], ...] = (), scale: bool = False) -> int:
        self.layers.append(KerasLayer(kind, tuple(inputs), path, shapes, scale))
        self.width[len(self.layers) - 1] = width
        return len(self.layers) - 1

    def batch_norm(self, x: int, path: tuple[str, ...], scale: bool = True) -> int:
        width = self.width[x]
        return self.add("batch_normalization", [x], width, path,
                        ((width,),) * (4 if scale else 3), scale)

    def conv_bn(self, x: int, filters: int, size: int, path: tuple[str, ...],
                activation: bool = True) -> int:
        conv = self.add("conv2d", [x], filters, path + ("Conv_0",),
                        ((size, size, self.width[x], filters),))
        out = self.batch_norm(conv, path + ("BatchNorm_0",), scale=False)
        return self.add("activation", [out], filters) if activation else out

    def multires_block(self, x: int, units: int, alpha: float, path: tuple[str, ...]) -> int:
        widths = multires_widths(units, alpha)
        shortcut = self.conv_bn(x, sum(widths), 1, path + ("ConvBN_0",), activation=False)
        conv3 = self.conv_bn(x, widths[0], 3, path + ("ConvBN_1",))
        conv5 = self.conv_bn(conv3, widths[1], 3, path + ("ConvBN_2",))
        conv7 = self.conv_bn(conv5, widths[2], 3, path + ("ConvBN_3",))
        out = self.add("concatenate", [conv3, conv5, conv7], sum(widths))
        out = self.batch_norm(out, path + ("BatchNorm_0",))
        out = self.add("add", [shortcut, out], sum(widths))
        out = self.add("activation", [out], sum(widths))
        return self.batch_norm(out, path + ("BatchNorm_1",))

    def res_path(self, x: int, filters: int, length: int, path: tuple[str, ...]) -> int:
        for unit in range(length):
            shortcut = self.conv_bn(x, filters, 1, path + (f"ConvBN_{2 * unit}",),
                                    activation=False)
            conv = self.conv_bn(x, filters, 3, path + (f"ConvBN_{2 * unit + 1}",))
            x = self.add("add", [shortcut, conv], filters)
            x = self.add("activation", [x], filters)
            x = self.batch_norm(x, path + (f"BatchNorm_{unit}",))
        return x


def multiresunet_layers(base_filters: int = 32, alpha: float = 1.67, in_channels: int = 1,
                        out_channels: int = 1) -> list[KerasLayer]:
    """The reference MultiResUNet's layers in Keras' `model.layers` order."""
    graph = _Graph()
    x = graph.add("input_layer", [], in_channels)
    filters = [base_filters * 2**i for i in range(5)]
    skips = []
    for depth, f in enumerate(filters[:4]):
        block = graph.multires_block(x, f, alpha, (f"MultiResBlock_{depth}",))
        x = graph.add("max_pooling2d", [block], graph.width[block])
        skips.append(graph.res_path(block, f, 4 - depth, (f"ResPath_{depth}",)))
    x = graph.multires_block(x, filters[4], alpha, ("MultiResBlock_4",))
    for up, (f, skip) in enumerate(zip(reversed(filters[:4]), reversed(skips), strict=True)):
        # Keras stores a Conv2DTranspose kernel as (kh, kw, out, in).
        upsampled = graph.add("conv2d_transpose", [x], f, (f"ConvTranspose_{up}",),
                              ((2, 2, f, graph.width[x]), (f,)))
        x = graph.add("concatenate", [upsampled, skip], f + graph.width[skip])
        x = graph.multires_block(x, f, alpha, (f"MultiResBlock_{5 + up}",))
    out = graph.conv_bn(x, out_channels, 1, ("ConvBN_0",), activation=False)
    out = graph.add("activation", [out], out_channels)
    return [graph.layers[i] for i in _keras_order(graph.layers, out)]


def _keras_order(layers: list[KerasLayer], output: int) -> list[int]:
    """Keras' functional layer order: by depth from the output (deepest first), ties broken
    by first visit in a depth-first traversal from the output over inputs in order."""
    visit: dict[int, int] = {}
    postorder: list[int] = []

    def walk(node: int) -> None:
        if node in visit:
            return
        visit[node] = len(visit)
        for parent in layers[node].inputs:
            walk(parent)
        postorder.append(node)

    walk(output)
    depth = {output: 0}
    for node in reversed(postorder):  # consumers before producers: longest path to the output
        for parent in layers[node].inputs:
            depth[parent] = max(depth.get(parent, 0), depth[node] + 1)
    return sorted(visit, key=lambda node: (-depth[node], visit[node]))


def _import_h5py() -> Any:
    try:
        import h5py
    except ImportError as error:
        raise ImportError("reading Keras files needs h5py: pip install -e '.[bench]' "
                          "(or pip install h5py)") from error
    return h5py


def _split_name(name: str) -> tuple[str, int]:
    """'conv2d_transpose_3' -> ('conv2d_transpose', 3); 'conv2d' -> ('conv2d', 0)."""
    match = re.fullmatch(r"(.*?)(?:_(\d+))?", name)
    assert match is not None
    return match[1], int(match[2] or 0)


def _read_keras3_weights(handle: Any, kinds: Sequence[str]) -> list[tuple[str, list[np.ndarray]]]:
    """A Keras 3 weights file (`.weights.h5`, or inside `.keras`) in model layer order.

    Groups are numbered per class in the model's layer order, so the n-th layer of a kind in
    `kinds` (the expected order) is that kind's group number n.
    """
    h5py = _import_h5py()
    with h5py.File(handle, "r") as file:
        if "layers" not in file:
            raise ValueError("not a Keras 3 weights file: it has no 'layers' group (top-level "
                             f"keys {sorted(file)})")
        by_kind: dict[str, dict[int, tuple[str, list[np.ndarray]]]] = {}
        for name, group in file["layers"].items():
            kind, index = _split_name(name)
            variables = group.get("vars", {})
            weights = [np.asarray(variables[key]) for key in sorted(variables, key=int)]
            if weights:
                by_kind.setdefault(kind, {})[index] = (name, weights)
    ordered = []
    counters: dict[str, int] = {}
    for kind in kinds:
        index = counters.get(kind, 0)
        counters[kind] = index + 1
        found = by_kind.get(kind, {}).pop(index, None)
        ordered.append(found if found else (f"<no {kind} number {index}>", []))
    # Layers the reference does not have come last, where the match reports them as extra.
    return ordered + [by_kind[kind][index] for kind in sorted(by_kind)
                      for index in sorted(by_kind[kind])]


def _read_legacy_h5(handle: Any) -> list[tuple[str, list[np.ndarray]]]:
    """A legacy Keras `.h5` file (`model.save('x.h5')` or Keras 2 `save_weights`), in order."""
    h5py = _import_h5py()
    with h5py.File(handle, "r") as file:
        root = file["model_weights"] if "model_weights" in file else file
        if "layer_names" not in root.attrs:
            raise ValueError("not a Keras weights file: no 'layers' group and no 'layer_names' "
                             f"attribute (top-level keys {sorted(file)})")
        ordered = []
        for raw in root.attrs["layer_names"]:
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            group = root[name]
            weights = [np.asarray(group[w.decode() if isinstance(w, bytes) else str(w)])
                       for w in group.attrs["weight_names"]]
            if weights:
                ordered.append((name, weights))
    return ordered


def _read_model(model: Any) -> list[tuple[str, list[np.ndarray]]]:
    """An in-memory Keras model's weighted layers, in `model.layers` order."""
    return [(layer.name, [np.asarray(w) for w in layer.get_weights()])
            for layer in model.layers if layer.get_weights()]


def read_keras(source: PathLike | Any, kinds: Sequence[str]) -> list[tuple[str, list[np.ndarray]]]:
    """(layer name, weights) of each weighted layer of a Keras model or file, in layer order."""
    if hasattr(source, "layers") and hasattr(source, "get_weights"):
        return _read_model(source)
    path = pathlib.Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no Keras file at {path}")
    if zipfile.is_zipfile(path):  # a `.keras` archive: config.json + model.weights.h5
        with zipfile.ZipFile(path) as archive:
            if "model.weights.h5" not in archive.namelist():
                raise ValueError(f"{path} is a zip file without model.weights.h5; expected a "
                                 "Keras 3 .keras archive")
            return _read_keras3_weights(io.BytesIO(archive.read("model.weights.h5")), kinds)
    h5py = _import_h5py()
    try:
        with h5py.File(path, "r") as file:
            keras3 = "layers" in file
    except OSError as error:
        raise ValueError(f"{path} is neither an HDF5 weights file nor a .keras archive") from error
    return _read_keras3_weights(path, kinds) if keras3 else _read_legacy_h5(path)


def _match(layers: list[KerasLayer],
           found: list[tuple[str, list[np.ndarray]]]) -> list[list[np.ndarray]]:
    """Check the file's layers against the reference's, one by one; name the first mismatch."""
    for position, (expected, (name, weights)) in enumerate(zip(layers, found, strict=False)):
        shapes = tuple(w.shape for w in weights)
        if shapes != expected.shapes:
            raise ValueError(
                f"the Keras weights do not match MultiResUNet: weighted layer {position} "
                f"({name!r}) has variables {list(shapes)}, expected the {expected.describe()}. "
                "Is the file a MultiResUNet of the original layout (check base_filters, "
                "alpha, input channels)?")
    if len(found) != len(layers):
        extra = (f"an unexpected extra layer {found[len(layers)][0]!r}" if len(found) > len(layers)
                 else f"no layer for the {layers[len(found)].describe()}")
        raise ValueError(f"the Keras weights do not match MultiResUNet: {len(found)} weighted "
                         f"layers where {len(layers)} were expected; the first difference is "
                         f"{extra}")
    return [weights for _, weights in found]


def _infer_sizes(layers: list[KerasLayer],
                 found: list[tuple[str, list[np.ndarray]]]) -> dict[str, int]:
    """base_filters, in_channels and out_channels from the kernels that fix them.

    Where such a kernel is missing (a file of another model), the paper's size stands in and
    the layer-by-layer match reports the first difference.
    """
    kernels = {layer.flax_path: weights[0] for layer, (_, weights)
               in zip(layers, found, strict=False) if weights and weights[0].ndim == 4}

    def size(path: tuple[str, ...], axis: int, default: int) -> int:
        return int(kernels[path].shape[axis]) if path in kernels else default

    return {"in_channels": size(("MultiResBlock_0", "ConvBN_0", "Conv_0"), 2, 1),
            "base_filters": size(("ConvTranspose_3",), 2, 32),  # Keras: (kh, kw, out, in)
            "out_channels": size(("ConvBN_0", "Conv_0"), 3, 1)}


def from_keras(source: PathLike | Any, alpha: float = 1.67) -> dict[str, Any]:
    """Flax variables {'params', 'batch_stats'} for `MultiResUNet` from Keras weights.

    `source` is a Keras model object, or a `.weights.h5`, `.keras` or legacy `.h5` file of the
    authors' MultiResUnet layout (any base width, input and output channels; `alpha` as built).
    Use the sizes from `model_fields(variables)` to build the matching `MultiResUNet`.
    """
    def weighted(layers: list[KerasLayer]) -> list[KerasLayer]:
        return [layer for layer in layers if layer.kind in WEIGHTED_KINDS]

    # The layer order does not depend on the widths: read in it, then check the inferred sizes.
    order = weighted(multiresunet_layers(alpha=alpha))
    found = read_keras(source, [layer.kind for layer in order])
    sizes = _infer_sizes(order, found)
    layers = weighted(multiresunet_layers(alpha=alpha, **sizes))
    flat: dict[tuple[str, ...], np.ndarray] = {}
    for layer, weights in zip(layers, _match(layers, found), strict=True):
        path = layer.flax_path
        if layer.kind == "conv2d":
            flat[("params",) + path + ("kernel",)] = weights[0]
        elif layer.kind == "conv2d_transpose":
            # Keras' (kh, kw, out, in) gradient-of-conv kernel -> Flax ConvTranspose's
            # (kh, kw, in, out) with transpose_kernel=False: swap the channels, flip spatially.
            flat[("params",) + path + ("kernel",)] = weights[0][::-1, ::-1].transpose(0, 1, 3, 2)
            flat[("params",) + path + ("bias",)] = weights[1]
        else:
            *affine, mean, var = weights
            names = ("scale", "bias") if layer.scale else ("bias",)
            for name, value in zip(names, affine, strict=True):
                flat[("params",) + path + (name,)] = value
            flat[("batch_stats",) + path + ("mean",)] = mean
            flat[("batch_stats",) + path + ("var",)] = var
    variables = flax.traverse_util.unflatten_dict(
        {key: jnp.asarray(value, jnp.float32) for key, value in flat.items()})
    _check_against_flax(variables, MultiResUNet(base_filters=sizes["base_filters"], alpha=alpha,
                                                out_channels=sizes["out_channels"]),
                        sizes["in_channels"])
    return variables


def _check_against_flax(variables: dict[str, Any], model: MultiResUNet, in_channels: int) -> None:
    """Every Flax variable is filled, with its shape (guards the path bookkeeping above)."""
    expected = jax.eval_shape(lambda: model.init(
        jax.random.key(0), jnp.zeros((1, 32, 32, in_channels)), train=False))
    want = {k: v.shape for k, v in flax.traverse_util.flatten_dict(expected).items()}
    have = {k: v.shape for k, v in flax.traverse_util.flatten_dict(variables).items()}
    if want != have:
        missing = sorted(set(want) - set(have)) or sorted(k for k in have if have[k] != want.get(k))
        raise AssertionError(f"converted variables differ from MultiResUNet's at {missing[:3]}")


def model_fields(variables: dict[str, Any]) -> dict[str, int]:
    """base_filters, in_channels and out_channels of MultiResUNet variables."""
    params = variables["params"]
    return {"base_filters": int(params["ConvTranspose_3"]["kernel"].shape[3]),
            "in_channels": int(params["MultiResBlock_0"]["ConvBN_0"]["Conv_0"]["kernel"].shape[2]),
            "out_channels": int(params["ConvBN_0"]["Conv_0"]["kernel"].shape[3])}


def write_workdir(variables: dict[str, Any], config: ml_collections.ConfigDict,
                  workdir: PathLike) -> pathlib.Path:
    """Write config.json and step-0 checkpoints (best/ and checkpoints/) holding `variables`.

    The model fields of `config` are set from the variables. The Adam state is fresh, so
    `msunet.train` on this workdir fine-tunes the imported weights.
    """
    run = Workdir(workdir)
    if run.holds_run():
        raise FileExistsError(f"{run.root} already holds a run; choose a new --output")
    config = ml_collections.ConfigDict(config.to_dict())
    config.model.name = "multiresunet"
    config.model.update(model_fields(variables))
    # The imported variables and a fresh Adam state: nothing is initialised only to be replaced.
    state = TrainState.create(apply_fn=create_model(config.model).apply,
                              params=variables["params"], batch_stats=variables["batch_stats"],
                              tx=create_optimizer(config.optim))
    run.save_config(config)
    source = data_lib.build_source(config.data, "train", **run.data_paths(config.data))
    data_iterator = iter(data_lib.train_dataset(config.data, source, config.train.batch_size,
                                                config.train.seed))
    checkpointer = run.checkpointer()
    checkpointer.save_best(0, state)
    # The bookkeeping `msunet.train` resumes from: nothing validated or skipped yet.
    checkpointer.save(0, state, data_iterator, RunMeta().to_json())
    checkpointer.close()
    return run.root


def define_flags(values: flags.FlagValues, argv: list[str]) -> None:
    """The command line of `python -m msunet.convert`."""
    flags.DEFINE_string("keras", None, "A Keras MultiResUNet: .weights.h5, .keras or legacy .h5.",
                        flag_values=values)
    flags.DEFINE_string("output", None, "The workdir to write (must not hold a run).",
                        flag_values=values)
    config_flags.DEFINE_config_file(
        "config", None, "The config stored with the weights (data and eval settings; "
        "model.alpha as the Keras model was built); default: msunet.config.base_config().",
        flag_values=values, sys_argv=argv)
    flags.mark_flags_as_required(["keras", "output"], flag_values=values)


def main(argv: list[str]) -> None:
    """`python -m msunet.convert --keras FILE --output DIR [--config FILE]`."""
    args = cli.parse(define_flags, argv)
    with cli.errors():
        config = args.config if args.config is not None else base_config()
        variables = from_keras(args.keras, alpha=config.model.alpha)
        workdir = write_workdir(variables, config, args.output)
    print(json.dumps({"workdir": str(workdir), **model_fields(variables)}))


if __name__ == "__main__":
    main(sys.argv)
