"""benchmarks.predict_throughput: its 16-bit full-size inputs, and that msunet's pipelined
predict and the plain Keras loop, given the same weights, write the same masks."""

import cv2
import numpy as np
import pytest

from benchmarks import predict_throughput as bench
from tests.conftest import SAMPLES


def test_inputs_are_enlarged_16_bit_mammograms(tmp_path):
    if not SAMPLES.is_dir():
        pytest.skip(f"no Mini-DDSM samples at {SAMPLES} (set MSUNET_SAMPLES to their folder)")
    paths = bench.make_inputs(tmp_path, 2, scale=0.5)
    assert len(paths) == 2
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert image.dtype == np.uint16 and image.max() > 255, "all 16 bits in use"
        assert max(image.shape) == 512, "the 1024-px samples at half size"


def test_msunet_and_the_keras_loop_write_the_same_masks(tmp_path, monkeypatch):
    monkeypatch.setenv("MSUNET_KEEP_FREED_MEMORY", "0")  # leave this process's malloc alone
    inputs = bench.make_inputs(tmp_path / "in", 3, scale=0.25)
    weights = tmp_path / "model.weights.h5"
    bench.save_weights(weights, image_size=32, base_filters=4)
    results = {variant: bench.measure(variant, inputs, weights, tmp_path / variant, 32, 4)
               for variant in ("msunet", "keras-predict")}
    for variant, result in results.items():
        assert result["images"] == 3 and result["images_per_s"] > 0, variant
        assert result["peak_memory_mb"] > 0
    for path in inputs:
        masks = [cv2.imread(str(tmp_path / variant / f"{path.stem}_mask.png"),
                            cv2.IMREAD_UNCHANGED) for variant in results]
        assert masks[0].shape == cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape
        assert np.mean(masks[0] != masks[1]) < 1e-3, "same weights, same steps, same masks"


def test_markdown_names_the_fastest_keras_loop_and_the_ratio():
    result = {"images": 4, "image_shape": [300, 200], "base_filters": 8, "image_size": 64,
              "repeats": 1, "machine": {"load_average_at_start": [0.1, 0.2, 0.3]},
              "summary": {"msunet": {"images_per_s": 2.0, "peak_memory_mb": 900.0},
                          "keras-predict": {"images_per_s": 0.8, "peak_memory_mb": 1500.0}},
              "fastest_keras": "keras-predict", "ratio_vs_fastest_keras": 2.5}
    text = bench.markdown(result)
    assert "(200x300 px)" in text and "| msunet | 2.00 | 0.50 | 900 |" in text
    assert "(keras-predict): **2.50x** (goal >= 2x)" in text
