"""Mini-DDSM: the real sample (every image, mask and double mask), its Kaggle layouts, a tree
without a spreadsheet, and an error naming the file for every kind of bad input."""

import shutil

import cv2
import numpy as np
import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msunet.data import MiniDDSM, build_source
from msunet.data.files import binarize, read_image
from msunet.data.miniddsm import case_id, find_tree
from msunet.workdir import Workdir
from tests.conftest import SAMPLES
from tests.data.conftest import CASE, FILES, expect_bad, needs_samples, small_miniddsm


def test_case_ids_are_scanner_letter_and_case_number():
    assert case_id("C_0029_1.LEFT_CC.png") == "C_0029"
    assert case_id("a-0123-1.RIGHT_MLO.jpg") == "A_0123"
    assert case_id("scan7.png") == "scan7", "an unparsed name is its own case (and reported)"


def test_a_root_that_is_not_mini_ddsm_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.* is not a directory"):
        find_tree(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="is not a Mini-DDSM root"):
        find_tree(tmp_path)


def test_a_tree_without_a_spreadsheet_is_scanned(tmp_path):
    case = tmp_path / "Benign" / "0001"
    case.mkdir(parents=True)
    image = np.full((80, 64), 30, np.uint8)
    image[20:60, :40] = 160
    mask = np.zeros((80, 64), np.uint8)
    mask[30:40, 10:20] = 255
    assert cv2.imwrite(str(case / "C_0001_1.LEFT_CC.png"), image)
    assert cv2.imwrite(str(case / "C_0001_1.LEFT_CC_Mask.png"), mask)
    assert cv2.imwrite(str(case / "C_0001_1.RIGHT_MLO.png"), np.ascontiguousarray(image[:, ::-1]))
    source = MiniDDSM(tmp_path)
    assert source.spreadsheet is None and source.tree == tmp_path and len(source) == 2
    first, second = source[0], source[1]
    assert (first["case"], first["status"], first["side"], first["view"]) == (
        "C_0001", "Benign", "LEFT", "CC")
    assert first["mask"].sum() == 100
    assert second["side"] == "RIGHT" and not second["mask"].any(), "no mask file: lesion-free"
    assert source.record(1) == {key: second[key] for key in second if key not in ("image", "mask")}


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(columns=st.lists(st.text(st.characters(codec="ascii", categories=["L", "N"]),
                                min_size=1, max_size=12), min_size=1, max_size=6, unique=True))
def test_spreadsheets_with_wrong_columns(tmp_path_factory, columns):
    root = tmp_path_factory.mktemp("miniddsm")
    case = root / "Benign" / "0001"
    case.mkdir(parents=True)
    assert cv2.imwrite(str(case / "C_0001_1.LEFT_CC.png"), np.zeros((80, 64), np.uint8))
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Data"
    sheet.append(columns)
    sheet.append(["Benign\\0001\\C_0001_1.LEFT_CC.png"] * len(columns))
    workbook.save(root / "DataWMask.xlsx")
    required = {"fullPath", "Status", "Tumour_Contour"}
    if required <= set(columns):
        return  # a well-formed sheet; other tests cover it
    with pytest.raises(ValueError, match="DataWMask.xlsx: missing column"):
        MiniDDSM(root)


# --- the real sample ---------------------------------------------------------------------------

@needs_samples
def test_miniddsm_finds_every_image_mask_and_the_two_double_masks(samples):
    records = [samples[i] for i in range(len(samples))]
    assert len(records) == 51
    assert sum(r["mask"].any() for r in records) == 23
    assert all(r["mask"].dtype == np.uint8 and set(np.unique(r["mask"])) <= {0, 1}
               and r["mask"].shape == r["image"].shape for r in records)
    assert all(not r["mask"].any() for r in records if r["status"] == "Normal")
    double = [(e, r) for e, r in zip(samples.entries, records, strict=True) if len(e.masks) == 2]
    assert len(double) == 2
    for entry, record in double:
        first, second = (binarize(read_image(path)) for path in entry.masks)
        assert first.any() and second.any() and not np.array_equal(first, second)
        np.testing.assert_array_equal(record["mask"], first | second)
    first = records[0]
    assert first["path"].endswith("Benign/0029/C_0029_1.LEFT_CC.png")
    assert (first["case"], first["side"], first["view"], first["age"]) == ("C_0029", "LEFT",
                                                                           "CC", 66)


@needs_samples
def test_miniddsm_accepts_the_kaggle_root_and_scans_folders_without_a_spreadsheet(
        tmp_path, samples):
    (tmp_path / "kaggle").mkdir()
    (tmp_path / "kaggle" / "MINI-DDSM-Complete-PNG-16").symlink_to(SAMPLES)
    from_kaggle_root = MiniDDSM(tmp_path / "kaggle")
    assert len(from_kaggle_root) == 51
    scanned_tree = tmp_path / "scanned"
    scanned_tree.mkdir()
    for status in ("Benign", "Cancer", "Normal"):
        (scanned_tree / status).symlink_to(SAMPLES / status)
    scanned = MiniDDSM(scanned_tree)
    assert scanned.spreadsheet is None
    assert [e.image.name for e in scanned.entries] == [e.image.name for e in samples.entries]
    assert [len(e.masks) for e in scanned.entries] == [len(e.masks) for e in samples.entries]
    assert scanned[0]["case"] == "C_0029" and scanned[0]["status"] == "Benign"


@needs_samples
def test_each_bad_input_gives_an_error_naming_the_file(tmp_path, data_config):
    data_config.val_fraction = data_config.test_fraction = 0.0
    data_config.root = str(small_miniddsm(tmp_path / "ok"))
    assert len(build_source(data_config, "train",
                            **Workdir(tmp_path / "ok-work").data_paths(data_config))) == 4

    data_config.root = str(tmp_path / "nowhere")
    expect_bad(data_config, tmp_path, "nowhere.* is not a directory")
    (tmp_path / "empty").mkdir()
    data_config.root = str(tmp_path / "empty")
    expect_bad(data_config, tmp_path, "empty is not a Mini-DDSM root")
    data_config.root = ""
    expect_bad(data_config, tmp_path, "needs data.root")

    root = small_miniddsm(tmp_path / "unreadable")
    (root / CASE / f"{FILES[2]}.png").write_bytes(b"not a png at all")
    data_config.root = str(root)
    expect_bad(data_config, tmp_path, f"{FILES[2]}.png: unreadable")

    root = small_miniddsm(tmp_path / "truncated")
    image = cv2.imread(str(root / CASE / f"{FILES[3]}.png"), cv2.IMREAD_GRAYSCALE)
    (root / CASE / f"{FILES[3]}.png").unlink()
    encoded = cv2.imencode(".jpg", image)[1].tobytes()
    (root / CASE / f"{FILES[3]}.jpg").write_bytes(encoded[:len(encoded) // 2])
    data_config.root = str(root)  # the sheet lists .png; the .jpg on disk is found instead
    expect_bad(data_config, tmp_path, f"{FILES[3]}.jpg: truncated JPEG")

    root = small_miniddsm(tmp_path / "nomask")
    (root / CASE / f"{FILES[0]}_Mask.png").unlink()
    small_miniddsm(tmp_path / "nomask-sheet")
    shutil.copy(tmp_path / "nomask-sheet" / "DataWMask.xlsx", root / "DataWMask.xlsx")
    data_config.root = str(root)
    expect_bad(data_config, tmp_path, f"{FILES[0]}_Mask.png: mask file of .* not found")

    root = small_miniddsm(tmp_path / "mismatch")
    mask_path = root / CASE / f"{FILES[1]}_Mask.png"
    cv2.imwrite(str(mask_path), cv2.imread(str(mask_path))[:-10])
    data_config.root = str(root)
    expect_bad(data_config, tmp_path, f"{FILES[1]}_Mask.png: mask is 1014x583 but its image "
                                      "is 1024x583")

    root = small_miniddsm(tmp_path / "rows", rows=[["Benign\\0029\\C_0029_1.GONE.png", "", "",
                                                    "", "Benign", "-", "-", 66, 3]])
    data_config.root = str(root)
    expect_bad(data_config, tmp_path, r"C_0029_1.GONE.png: image file not found \(listed in "
                                      r"DataWMask.xlsx row 6\)")

    data_config.root = str(small_miniddsm(tmp_path / "small"))
    data_config.image_size = 1024
    expect_bad(data_config, tmp_path, "C_0029_1.LEFT_CC.png: image is 1024x589, smaller than "
                                      "the model's 1024x1024")


@needs_samples
def test_unparsed_names_and_empty_rows_are_reported_not_guessed(tmp_path, data_config):
    data_config.val_fraction = data_config.test_fraction = 0.0
    root = small_miniddsm(tmp_path / "named", rows=[[None, "x.png", "CC", "LEFT", "Benign", "-",
                                                     "-", 66, 3]])
    data_config.root = str(root)
    expect_bad(data_config, tmp_path, r"DataWMask.xlsx: row 6: no fullPath")

    root = small_miniddsm(tmp_path / "renamed")
    shutil.move(root / CASE / f"{FILES[3]}.png", root / CASE / "scan7.png")
    workbook = openpyxl.load_workbook(root / "DataWMask.xlsx")
    workbook["Data"]["A5"] = "Benign\\0029\\scan7.png"
    workbook.save(root / "DataWMask.xlsx")
    data_config.root = str(root)
    expect_bad(data_config, tmp_path, r"scan7.png: file name does not parse to a Mini-DDSM case")
    data_config.on_bad_sample = "skip"
    source = build_source(data_config, "train",
                          **Workdir(tmp_path / "skip-work").data_paths(data_config))
    assert len(source) == 3
