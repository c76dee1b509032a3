"""Train-step and inference throughput of one framework, measured in this process.

    python -m benchmarks.throughput --framework jax --model multiresunet --size 256 --batch 8

prints one JSON line: images/s of each timed train step and inference call, the compile time
(first call minus a steady call), peak memory and, for JAX, XLA's FLOP count per step.
`benchmarks.run` starts one such process per framework and repeat, alternating frameworks, so
that no framework inherits another's threads, caches or allocator state.

Frameworks: `jax` (msunet's jitted `train_step` with the state donated, as `msunet.train` runs
it), `keras-tf` (the Keras reference on TensorFlow, `train_on_batch` as Keras compiles it: no
XLA on CPU, Keras' default) and `keras-jax` (the same Keras model on Keras' JAX backend). All get
the same random batch: float images in [0, 1] and binary masks, Adam with Keras' defaults, binary
cross-entropy, float32 unless `--dtype bfloat16` (JAX only). `--host-memory kept` (the default)
applies `msunet.hostmem.keep_freed_memory` to whichever framework runs; TensorFlow's oneDNN
switch is the environment variable TF_ENABLE_ONEDNN_OPTS, recorded with the result.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from msunet import hostmem

FRAMEWORKS = ("jax", "keras-tf", "keras-jax")


@dataclasses.dataclass(frozen=True)
class Spec:
    """What to measure: the same for every framework of one comparison."""

    model: str = "multiresunet"
    size: int = 256
    batch: int = 8
    base_filters: int = 32
    dtype: str = "float32"
    train_steps: int = 3
    infer_steps: int = 3
    seed: int = 0


def make_batch(spec: Spec) -> tuple[np.ndarray, np.ndarray]:
    """One fixed batch: uint8 grey images and {0, 1} masks with ~10 % foreground."""
    rng = np.random.default_rng(spec.seed)
    images = rng.integers(0, 256, (spec.batch, spec.size, spec.size, 1), dtype=np.uint8)
    masks = (rng.random((spec.batch, spec.size, spec.size, 1)) < 0.1).astype(np.uint8)
    return images, masks


def _time_calls(call: Callable[[], Any], steps: int) -> tuple[float, list[float]]:
    """Seconds of the first call (compile + run) and of each of `steps` later calls."""
    start = time.perf_counter()
    call()
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return first, times


def _summary(spec: Spec, first: float, times: list[float],
             ahead_of_time_s: float = 0.0) -> dict[str, Any]:
    """images/s per timed call; compile time = explicit compilation + (first - steady call)."""
    steady = statistics.median(times)
    return {"images_per_s": [spec.batch / t for t in times], "first_call_s": first,
            "compile_s": ahead_of_time_s + max(first - steady, 0.0)}


def _compile(function: Any, *args: Any) -> tuple[Any, float, Any]:
    """Compile a jitted function ahead of time: the executable, seconds, XLA's FLOP count.
    The compiler's freed memory is released before the first run, as `hostmem.CompiledAhead`
    does in msunet's tools."""
    start = time.perf_counter()
    compiled = function.lower(*args).compile()
    seconds = time.perf_counter() - start
    hostmem.release_freed_memory()
    return compiled, seconds, (compiled.cost_analysis() or {}).get("flops")


def measure_jax(spec: Spec) -> dict[str, Any]:
    """msunet's train_step (donated state) and, for inference, a jitted sigmoid(apply) with the
    BatchNorms folded into the convolutions as `msunet.inference` runs it."""
    import functools

    import jax
    import jax.numpy as jnp

    from msunet.config import base_config
    from msunet.data.preprocess import model_inputs
    from msunet.models.layers import folded_batch_norm
    from msunet.state import create_train_state
    from msunet.training import train_step

    config = base_config()
    config.model.name = spec.model
    config.model.base_filters = spec.base_filters
    config.model.dtype = spec.dtype
    config.data.image_size = spec.size
    state = create_train_state(config, jax.random.key(spec.seed))
    images, masks = make_batch(spec)
    batch = {"image": jnp.asarray(images), "mask": jnp.asarray(masks)}

    step, train_compile_s, flops = _compile(
        jax.jit(functools.partial(train_step, threshold=0.5), donate_argnums=0), state, batch)
    holder = {"state": state}

    def train() -> None:
        new_state, _, finite = step(holder["state"], batch)
        holder["state"] = new_state
        jax.block_until_ready((new_state.params, finite))

    train_first, train_times = _time_calls(train, spec.train_steps)

    @jax.jit
    def infer(params: Any, batch_stats: Any, x: jax.Array) -> jax.Array:
        with folded_batch_norm():
            logits = holder["state"].apply_fn({"params": params, "batch_stats": batch_stats},
                                              model_inputs(x), train=False)
        return jax.nn.sigmoid(logits)

    trained = holder["state"]
    args = (trained.params, trained.batch_stats, batch["image"])
    infer_compiled, infer_compile_s, infer_flops = _compile(infer, *args)
    infer_first, infer_times = _time_calls(
        lambda: infer_compiled(*args).block_until_ready(), spec.infer_steps)
    return {"train": _summary(spec, train_first, train_times, train_compile_s),
            "infer": _summary(spec, infer_first, infer_times, infer_compile_s),
            "train_flops_per_step": flops, "infer_flops_per_call": infer_flops,
            "peak_memory_mb": _peak_memory_mb("jax"),
            "device": str(jax.devices()[0].device_kind),
            "xla_flags": os.environ.get("XLA_FLAGS", "")}


def measure_keras(spec: Spec) -> dict[str, Any]:
    """The Keras reference with `train_on_batch` / `predict_on_batch` (Keras' own loops)."""
    if spec.dtype != "float32":
        raise ValueError("the Keras reference is measured in float32 only")
    import keras

    from benchmarks import keras_reference

    keras.utils.set_random_seed(spec.seed)
    model = keras_reference.build(spec.model, spec.size, base_filters=spec.base_filters)
    model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-7),
                  loss="binary_crossentropy")
    images, masks = make_batch(spec)
    from msunet.data.preprocess import model_inputs

    x, y = model_inputs(images), masks.astype(np.float32)
    train_first, train_times = _time_calls(lambda: model.train_on_batch(x, y), spec.train_steps)
    infer_first, infer_times = _time_calls(lambda: model.predict_on_batch(x), spec.infer_steps)
    backend = keras.backend.backend()
    return {"train": _summary(spec, train_first, train_times),
            "infer": _summary(spec, infer_first, infer_times),
            "peak_memory_mb": _peak_memory_mb(backend), "backend": backend,
            "jit_compile": bool(model.jit_compile),
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")}


def _peak_memory_mb(framework: str) -> float:
    """Peak accelerator memory when there is one, else this process's peak resident memory."""
    try:
        if framework == "jax":
            import jax

            stats = jax.devices()[0].memory_stats() or {}
            if "peak_bytes_in_use" in stats:
                return stats["peak_bytes_in_use"] / 2**20
        elif framework == "tensorflow":
            import tensorflow as tf

            if tf.config.list_physical_devices("GPU"):
                return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    except (RuntimeError, ValueError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(framework: str, spec: Spec) -> dict[str, Any]:
    """Measure `framework`; the Keras backend must be chosen before keras is first imported."""
    if framework == "jax":
        return measure_jax(spec)
    if framework in ("keras-tf", "keras-jax"):
        wanted = "tensorflow" if framework == "keras-tf" else "jax"
        if os.environ.setdefault("KERAS_BACKEND", wanted) != wanted:
            raise RuntimeError(f"KERAS_BACKEND={os.environ['KERAS_BACKEND']} but {framework} "
                               "was asked for; run it in a fresh process")
        return measure_keras(spec)
    raise ValueError(f"unknown framework {framework!r}; expected one of {FRAMEWORKS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework", choices=FRAMEWORKS, required=True)
    parser.add_argument("--host-memory", choices=("kept", "default"), default="kept",
                        help="kept: glibc malloc keeps freed memory (msunet.hostmem, as msunet's "
                        "command-line tools run); default: glibc's own behaviour")
    for field in dataclasses.fields(Spec):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default),
                            default=field.default)
    args = vars(parser.parse_args())
    framework, host_memory = args.pop("framework"), args.pop("host_memory")
    # Before JAX or TensorFlow start their threads and allocate anything.
    kept = host_memory == "kept" and hostmem.keep_freed_memory()
    result = measure(framework, Spec(**args))
    print(json.dumps({"framework": framework, "host_memory": "kept" if kept else "default",
                      **result}), flush=True)


if __name__ == "__main__":
    main()
