"""The `python -m msunet.predict` command: a mask and an overlay per input at its own size, the
flags that override the run's eval settings, and one-line errors naming the file."""

import cv2
import numpy as np
import pytest

from msunet.data import synthetic_mammogram
from msunet.data.readers import BadSampleError
from msunet.inference import Predictor, load_variables
from msunet.predict import main as predict_main
from msunet.predict import predict_files
from msunet.workdir import Workdir
from tests.conftest import run_module


def expect_error(result, *fragments):
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def test_cli_errors_name_the_path(smoke_run, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    expect_error(run_module("msunet.predict", f"--workdir={smoke_run}", f"--input={notes}",
                            f"--output={tmp_path / 'out'}"), str(notes), "not an image")

    no_checkpoint = Workdir(tmp_path / "fresh")
    no_checkpoint.root.mkdir()
    no_checkpoint.config_file.write_text(Workdir(smoke_run).config_file.read_text())
    image = tmp_path / "scan.png"
    cv2.imwrite(str(image), np.full((80, 80), 100, np.uint8))
    expect_error(run_module("msunet.predict", f"--workdir={no_checkpoint.root}",
                            f"--input={image}", f"--output={tmp_path / 'out'}"),
                 "no best checkpoint", str(no_checkpoint.root))


def test_predict_cli_writes_mask_and_overlay(smoke_run, sample_image, tmp_path, monkeypatch):
    monkeypatch.setenv("MSUNET_KEEP_FREED_MEMORY", "0")  # leave this process's malloc alone
    predict_main(["predict", f"--workdir={smoke_run}", f"--input={sample_image}",
                  f"--output={tmp_path}", "--probability"])
    height, width = cv2.imread(str(sample_image), cv2.IMREAD_UNCHANGED).shape[:2]
    mask = cv2.imread(str(tmp_path / f"{sample_image.stem}_mask.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (height, width) and set(np.unique(mask)) <= {0, 255}
    overlay = cv2.imread(str(tmp_path / f"{sample_image.stem}_overlay.png"))
    assert overlay.shape == (height, width, 3)
    assert (tmp_path / f"{sample_image.stem}_probability.png").is_file()


def test_predict_cli_reads_a_folder_and_its_flags(smoke_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MSUNET_KEEP_FREED_MEMORY", "0")
    inputs = tmp_path / "in"
    inputs.mkdir()
    shapes = [(96, 80), (70, 100)]
    for i, (height, width) in enumerate(shapes):
        scan = synthetic_mammogram(1, i, size=128)["image"][:height, :width]
        assert cv2.imwrite(str(inputs / f"scan{i}.png"), np.ascontiguousarray(scan))
    (inputs / "notes.txt").write_text("not an image: left alone in a folder")
    predict_main(["predict", f"--workdir={smoke_run}", f"--input={inputs}",
                  f"--output={tmp_path / 'out'}", "--checkpoint=latest", "--sliding_window",
                  "--tta_hflip"])
    out = capsys.readouterr().out
    assert "from the latest checkpoint (step 8); 2 image(s)" in out
    for i, shape in enumerate(shapes):
        mask = cv2.imread(str(tmp_path / "out" / f"scan{i}_mask.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == shape and set(np.unique(mask)) <= {0, 255}
        assert (tmp_path / "out" / f"scan{i}_overlay.png").is_file()
    assert not list((tmp_path / "out").glob("*_probability.png")), "only with --probability"


def test_predict_files_batches_overlap_and_keep_the_input_order(smoke_run, tmp_path):
    """Five inputs through batches of two (the last one padded): each prediction is what the
    one-image Predictor gives, yielded in input order, and a bad file names itself."""
    config = Workdir(smoke_run).load_config()
    config.train.eval_batch_size = 2
    predictor = Predictor(load_variables(smoke_run, config)[0], config)
    inputs = []
    for i, (height, width) in enumerate([(96, 80), (70, 100), (64, 64), (120, 90), (80, 80)]):
        scan = synthetic_mammogram(1, i, size=128)["image"][:height, :width]
        inputs.append(tmp_path / f"scan{i}.png")
        assert cv2.imwrite(str(inputs[-1]), np.ascontiguousarray(scan))
    done = list(predict_files(predictor, inputs, tmp_path / "out"))
    assert [item.path for item in done] == inputs
    for item in done:
        alone = predictor(cv2.imread(str(item.path), cv2.IMREAD_UNCHANGED))
        np.testing.assert_allclose(item.prediction.probability, alone.probability, atol=1e-5)
        written = cv2.imread(str(item.files["mask"]), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(written, item.prediction.mask.astype(np.uint8) * 255)

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(BadSampleError, match="broken.png"):
        list(predict_files(predictor, [inputs[0], broken, inputs[1]], tmp_path / "out2"))
