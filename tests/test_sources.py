"""Real data sources (Mini-DDSM sample, CBIS-DDSM, image folders), splits, preprocessing, cache.

Uses the real Mini-DDSM subset at ../shared/data/mammo_samples (or $MSUNET_SAMPLES); the tests
that need it are skipped, saying so, when it is not there.
"""

import json
import logging
import pathlib
import shutil

import cv2
import numpy as np
import openpyxl
import pytest

from msunet.data import (
    Augment,
    BadSampleError,
    CachedSource,
    ImageFolder,
    MiniDDSM,
    Preprocess,
    build_cache,
    build_source,
    eval_dataset,
    fill_outline,
    train_dataset,
)
from msunet.data.files import binarize, read_image
from msunet.data.preprocess import breast_box, prepare_image, restore_geometry
from msunet.data.splits import SPLITS_FILE, load_or_create_splits, split_cases
from tests.conftest import SAMPLES, run_module

needs_samples = pytest.mark.skipif(
    not (SAMPLES / "DataWMask.xlsx").is_file(),
    reason=f"the Mini-DDSM sample is not at {SAMPLES} (set MSUNET_SAMPLES to its folder)")


def iou(a, b):
    a, b = a > 0, b > 0
    return (a & b).sum() / (a | b).sum()


@pytest.fixture(scope="module")
def samples():
    return MiniDDSM(SAMPLES)


@pytest.fixture
def data_config(smoke_config):
    config = smoke_config.copy_and_resolve_references()
    config.data.source = "miniddsm"
    config.data.root = str(SAMPLES)
    return config.data


# --- Mini-DDSM ---------------------------------------------------------------------------------

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
def test_filling_the_original_outline_jpegs_gives_the_shipped_masks():
    originals = sorted((SAMPLES / "_original_contour_masks").rglob("*.jpg"))
    assert len(originals) == 25
    for path in originals:
        outline = read_image(path)
        assert binarize(outline).mean() < 0.002, "the originals are thin outlines"
        shipped = binarize(read_image(SAMPLES / path.relative_to(
            SAMPLES / "_original_contour_masks").with_suffix(".png")))
        filled = fill_outline(outline)
        small = cv2.resize(filled.astype(np.float32), shipped.shape[::-1],
                           interpolation=cv2.INTER_AREA) >= 0.5
        assert iou(small, shipped) >= 0.95, path
        np.testing.assert_array_equal(fill_outline(filled * 255), filled)  # idempotent
        np.testing.assert_array_equal(fill_outline(shipped), shipped)


def test_fill_outline_closes_gaps_and_fills_the_interior():
    outline = np.zeros((60, 60), np.uint8)
    cv2.circle(outline, (30, 30), 20, 255, 1)
    outline[10, 28:33] = 0  # a gap in the outline, 1 px wide after JPEG-like thresholding
    filled = fill_outline(outline)
    disk = np.zeros_like(outline)
    cv2.circle(disk, (30, 30), 20, 1, -1)
    assert iou(filled, disk) > 0.97
    assert filled[0, 0] == 0 and filled[30, 30] == 1
    np.testing.assert_array_equal(fill_outline(filled), filled)
    np.testing.assert_array_equal(fill_outline(np.zeros((8, 8), np.uint8)), 0)


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


def test_sixteen_bit_images_keep_their_range(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    image = np.tile(np.linspace(0, 65535, 96).astype(np.uint16), (80, 1))
    image[:, :20] = 0  # film background
    cv2.imwrite(str(tmp_path / "images" / "a.png"), image)
    mask = np.zeros((80, 96), np.uint8)
    mask[30:50, 60:80] = 255
    cv2.imwrite(str(tmp_path / "masks" / "a.tif"), mask)
    record = ImageFolder(tmp_path / "images", tmp_path / "masks")[0]
    assert record["image"].dtype == np.uint16 and record["image"].max() == 65535
    assert record["mask"].sum() == 400
    out = Preprocess(64, 0.0, 8, crop_breast=False, canonical_side="").map(record)
    assert out["image"].min() == 0 and out["image"].max() >= 250


# --- splits ------------------------------------------------------------------------------------

@needs_samples
def test_no_patient_is_in_two_splits_and_the_split_is_saved_and_reused(tmp_path, data_config):
    sources = {split: build_source(data_config, split, tmp_path) for split in
               ("train", "val", "test")}
    cases = {split: {s.record(i)["case"] for i in range(len(s))} for split, s in sources.items()}
    assert sum(len(s) for s in sources.values()) == 51
    assert all(cases.values())
    assert not (cases["train"] & cases["val"] or cases["train"] & cases["test"]
                or cases["val"] & cases["test"])
    saved = json.loads((tmp_path / SPLITS_FILE).read_text())
    assert set(saved["test"]) == cases["test"]
    # The saved split wins over a new draw, and other settings are refused, not ignored.
    data_config.split_seed = 1
    with pytest.raises(ValueError, match="other settings"):
        build_source(data_config, "train", tmp_path)
    data_config.split_seed = 0
    (tmp_path / SPLITS_FILE).write_text(json.dumps(
        saved | {"train": saved["test"], "test": saved["train"]}))
    again = build_source(data_config, "test", tmp_path)
    assert {again.record(i)["case"] for i in range(len(again))} == cases["train"]


def test_split_cases_is_seeded_and_complete():
    cases = [f"C_{i:04d}" for i in range(40)] * 4  # four views per patient
    one = split_cases(cases, 0.2, 0.1, seed=3)
    assert one == split_cases(reversed(cases), 0.2, 0.1, seed=3)
    assert one != split_cases(cases, 0.2, 0.1, seed=4)
    assert [len(one[s]) for s in ("train", "val", "test")] == [28, 8, 4]
    assert sorted(sum(one.values(), [])) == sorted(set(cases))
    with pytest.raises(ValueError, match="too few"):
        split_cases(["a", "b"], 0.3, 0.3, seed=0)
    assert load_or_create_splits(None, "x", cases, 0.2, 0.1, 3) == one


# --- preprocessing -----------------------------------------------------------------------------

@needs_samples
def test_breast_crop_keeps_every_lesion_and_drops_background(samples):
    areas = []
    for i in range(len(samples)):
        record = samples[i]
        (y0, y1, x0, x1), _ = breast_box(record["image"])
        if record["mask"].any():
            assert record["mask"][y0:y1, x0:x1].sum() == record["mask"].sum(), record["path"]
        areas.append((y1 - y0) * (x1 - x0) / record["image"].size)
    assert np.median(areas) < 0.8, "the crop removes film background"


def test_breast_crop_drops_label_and_film_border_and_finds_the_side():
    image = np.full((300, 200), 10, np.uint8)
    breast = np.zeros_like(image)
    cv2.ellipse(breast, (199, 150), (120, 110), 0, 0, 360, 1, -1)  # against the right edge
    image[breast > 0] = 120
    image[20:50, 15:60] = 250  # burned-in label on the far side
    image[:, :3] = 200  # bright film edge
    (y0, y1, x0, x1), right = breast_box(image)
    assert right
    assert x0 > 60 and x1 == 200, "label and film edge are outside the box"
    assert breast[y0:y1, x0:x1].sum() == breast.sum()
    prepared = Preprocess(64, 0.0, 8).map({"image": image, "mask": breast})
    assert prepared["mask"][:, :32].sum() > prepared["mask"][:, 32:].sum(), "mirrored left"


@needs_samples
def test_prepare_image_matches_training_and_restore_geometry_inverts_it(samples, data_config):
    data_config.image_size = 256
    preprocess = Preprocess.from_config(data_config)
    flips = set()
    for i in range(len(samples)):
        record = samples[i]
        if not record["mask"].any():
            continue
        image, geometry = prepare_image(record["image"], data_config)
        trained = preprocess.map(record)
        np.testing.assert_array_equal(image, trained["image"][..., 0])
        assert image[:, :128].mean() > image[:, 128:].mean(), "breast mirrored to the left"
        flips.add(geometry.flipped)
        restored = restore_geometry(trained["mask"][..., 0].astype(np.float32), geometry)
        assert restored.shape == record["mask"].shape
        assert iou(restored >= 0.5, record["mask"]) > 0.85, record["path"]
    assert flips == {True, False}


@needs_samples
def test_augmented_real_image_and_mask_stay_aligned(samples):
    record = next(samples[i] for i in range(len(samples)) if samples[i]["mask"].mean() > 0.02)
    prepared = Preprocess(128, 2.0, 8).map(record)
    marker = {"image": prepared["mask"] * 255, "mask": prepared["mask"]}
    augment = Augment(rotation_prob=1.0, rotation_degrees=30, zoom_prob=1.0,
                      zoom_range=(0.8, 1.2), contrast_prob=0.0)
    for seed in range(8):
        out = augment.random_map(prepared, np.random.default_rng(seed))
        moved = augment.random_map(marker, np.random.default_rng(seed))
        assert set(np.unique(out["mask"])) <= {0, 1} and out["mask"].any()
        assert np.mean((moved["image"] > 127) == (out["mask"] > 0)) > 0.99
        lesion = out["mask"][..., 0] > 0
        assert out["image"][..., 0][lesion].mean() > out["image"][..., 0][~lesion].mean()


# --- cache and pipeline ------------------------------------------------------------------------

@needs_samples
def test_cache_is_reused_rebuilt_on_change_and_never_used_half_written(tmp_path, data_config,
                                                                       samples):
    root = tmp_path / "cache"
    first = build_cache(samples, data_config, root)
    assert len(first) == 51 and first[0]["image"].shape == (64, 64, 1)
    stamp = (first.directory / "images.npy").stat().st_mtime_ns
    assert build_cache(samples, data_config, root).directory == first.directory
    assert (first.directory / "images.npy").stat().st_mtime_ns == stamp
    expected = Preprocess.from_config(data_config).map(samples[5])
    np.testing.assert_array_equal(first[5]["image"], expected["image"])
    np.testing.assert_array_equal(first[5]["mask"], expected["mask"])
    np.load(first.directory / "masks.npy", allow_pickle=False)

    data_config.clahe_clip_limit = 3.0
    changed = build_cache(samples, data_config, root)
    assert changed.directory != first.directory
    # A folder without records.json (a crashed build) is not a cache: it is built again.
    (changed.directory / "records.json").unlink()
    rebuilt = build_cache(samples, data_config, root)
    assert rebuilt.directory == changed.directory and len(rebuilt) == 51
    assert not list(root.glob(".*tmp*")), "temporary build folders are removed"


@needs_samples
def test_batches_identical_for_zero_and_two_worker_processes(tmp_path, data_config):
    source = build_source(data_config, "train", tmp_path)
    assert isinstance(source, CachedSource)

    def first_batches(workers):
        data_config.num_workers = workers
        iterator = iter(train_dataset(data_config, source, batch_size=4, seed=5))
        return [next(iterator) for _ in range(10)]  # crosses an epoch boundary

    for one, two in zip(first_batches(0), first_batches(2), strict=True):
        np.testing.assert_array_equal(one["image"], two["image"])
        np.testing.assert_array_equal(one["mask"], two["mask"])
    batches = list(eval_dataset(data_config, source, batch_size=8))
    assert sum(len(b["image"]) for b in batches) == len(source)


# --- bad input ---------------------------------------------------------------------------------

CASE = "Benign/0029"
FILES = ("C_0029_1.LEFT_CC", "C_0029_1.LEFT_MLO", "C_0029_1.RIGHT_CC", "C_0029_1.RIGHT_MLO")


def small_miniddsm(root, rows=None):
    """One real case copied to `root` (4 views, 2 masks) with its own DataWMask.xlsx."""
    (root / CASE).mkdir(parents=True)
    for path in (SAMPLES / CASE).glob("*.png"):
        shutil.copy(path, root / CASE / path.name)
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Data"
    sheet.append(["fullPath", "fileName", "View", "Side", "Status", "Tumour_Contour",
                  "Tumour_Contour2", "Age", "Density"])
    for name in FILES:
        mask = f"{CASE}/{name}_Mask.png".replace("/", "\\")
        has_mask = (root / CASE / f"{name}_Mask.png").exists()
        sheet.append([f"{CASE}/{name}.png".replace("/", "\\"), f"{name}.png", "CC", "LEFT",
                      "Benign", mask if has_mask else "-", "-", 66, 3])
    for row in rows or []:
        sheet.append(row)
    workbook.save(root / "DataWMask.xlsx")
    return root


def expect_bad(data, tmp_path, match):
    with pytest.raises((BadSampleError, FileNotFoundError, ValueError), match=match):
        build_source(data, "train", tmp_path / "work")


@needs_samples
def test_each_bad_input_gives_an_error_naming_the_file(tmp_path, data_config):
    data_config.val_fraction = data_config.test_fraction = 0.0
    data_config.root = str(small_miniddsm(tmp_path / "ok"))
    assert len(build_source(data_config, "train", tmp_path / "ok-work")) == 4

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
    source = build_source(data_config, "train", tmp_path / "skip-work")
    assert len(source) == 3


def test_an_outline_with_a_wide_gap_is_reported_not_used_as_a_ring(tmp_path):
    from msunet.data.files import read_mask_union

    outline = np.zeros((60, 60), np.uint8)
    cv2.circle(outline, (30, 30), 20, 255, 1)
    closed = tmp_path / "closed_Mask.png"
    cv2.imwrite(str(closed), outline)
    assert read_mask_union([closed], outline.shape).sum() > 1000  # filled: ~pi 20^2
    outline[5:20, 20:41] = 0  # a gap of ~20 px at the top
    open_ring = tmp_path / "open_Mask.png"
    cv2.imwrite(str(open_ring), outline)
    with pytest.raises(BadSampleError, match="open_Mask.png: the lesion outline does not close"):
        read_mask_union([open_ring], outline.shape)
    disk = np.zeros((60, 60), np.uint8)
    cv2.circle(disk, (30, 30), 20, 255, -1)
    solid = tmp_path / "solid_Mask.png"
    cv2.imwrite(str(solid), disk)
    assert read_mask_union([solid], disk.shape).sum() == (disk > 0).sum()


@needs_samples
def test_skip_drops_bad_samples_with_one_warning_listing_them(tmp_path, data_config, caplog):
    root = small_miniddsm(tmp_path / "data", rows=[["Benign\\0029\\C_0029_1.GONE.png", "", "",
                                                    "", "Benign", "-", "-", 66, 3]])
    (root / CASE / f"{FILES[2]}.png").write_bytes(b"broken")
    data_config.root = str(root)
    data_config.val_fraction = data_config.test_fraction = 0.0
    data_config.on_bad_sample = "skip"
    with caplog.at_level(logging.WARNING):
        source = build_source(data_config, "train", tmp_path / "work")
        build_source(data_config, "train", tmp_path / "work")  # reused: no second warning
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warnings) == 1
    assert "skipped 2 bad sample(s)" in warnings[0]
    assert "C_0029_1.GONE.png" in warnings[0] and f"{FILES[2]}.png" in warnings[0]
    assert len(source) == 3
    assert {pathlib.Path(source.record(i)["path"]).stem for i in range(3)} == {
        FILES[0], FILES[1], FILES[3]}


# --- CBIS-DDSM and folders ---------------------------------------------------------------------

def write_dicom(path, pixels):
    pydicom = pytest.importorskip("pydicom", reason="pydicom (extra 'cbis') is not installed")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.set_pixel_data(pixels, "MONOCHROME2", 16 if pixels.dtype == np.uint16 else 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)
    assert pydicom.dcmread(path).pixel_array.shape == pixels.shape


def test_cbis_unions_roi_masks_tells_crop_from_mask_and_reports_size_mismatch(tmp_path):
    pytest.importorskip("pydicom", reason="pydicom (extra 'cbis') is not installed")
    from msunet.data import CBISDDSM

    root = tmp_path / "CBIS-DDSM"
    image = np.zeros((120, 80), np.uint16)
    image[:, :50] = 40000
    # TCIA renames the folders below the per-image folder: the CSV's paths do not exist as such.
    write_dicom(root / "Mass-Training_P_00001_LEFT_CC" / "07-20-2016" / "1.000-full" / "1-1.dcm",
                image)
    masks = []
    for n, (y, x) in enumerate(((20, 10), (70, 30)), start=1):
        mask = np.zeros((120, 80), np.uint8)
        mask[y:y + 15, x:x + 10] = 255
        masks.append(mask)
        folder = root / f"Mass-Training_P_00001_LEFT_CC_{n}" / "08-07-2016" / "1.000-ROI"
        write_dicom(folder / "1-1.dcm", mask[y:y + 15, x:x + 10].copy())  # the lesion crop
        write_dicom(folder / "1-2.dcm", mask)
    header = ("patient_id,breast_density,left or right breast,image view,abnormality id,"
              "abnormality type,pathology,image file path,cropped image file path,"
              "ROI mask file path\n")
    rows = "".join(
        f"P_00001,3,LEFT,CC,{n},mass,MALIGNANT,Mass-Training_P_00001_LEFT_CC/1.3.6/1.3.7/"
        f"000000.dcm,Mass-Training_P_00001_LEFT_CC_{n}/1.3.8/1.3.9/000001.dcm,"
        f"Mass-Training_P_00001_LEFT_CC_{n}/1.3.8/1.3.9/000000.dcm\n" for n in (1, 2))
    (root / "mass_case_description_train_set.csv").write_text(header + rows)
    source = CBISDDSM(root)
    assert len(source) == 1
    record = source[0]
    assert record["image"].dtype == np.uint16 and record["image"].max() == 40000
    np.testing.assert_array_equal(record["mask"], ((masks[0] | masks[1]) > 0).astype(np.uint8))
    assert record["case"] == "P_00001" and record["pathology"] == ["MALIGNANT"]

    write_dicom(root / "Mass-Training_P_00001_LEFT_CC_2" / "08-07-2016" / "1.000-ROI" / "1-2.dcm",
                np.zeros((100, 80), np.uint8))
    with pytest.raises(BadSampleError, match=r"1-2.dcm: ROI mask is 100x80 but its image .* is "
                                             r"120x80"):
        source[0]


def test_image_folder_matches_stems_across_formats_and_reports_missing_masks(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for stem, ext, mask_ext in (("a", ".png", ".png"), ("b", ".jpg", ".tif"),
                                ("c", ".tif", ".jpg")):
        cv2.imwrite(str(images / f"{stem}{ext}"), np.full((40, 30), 90, np.uint8))
        mask = np.zeros((40, 30), np.uint8)
        mask[5:15, 5:15] = 255
        cv2.imwrite(str(masks / f"{stem}{mask_ext}"), mask)
    source = ImageFolder(images, masks)
    assert [pathlib.Path(source[i]["path"]).name for i in range(3)] == ["a.png", "b.jpg",
                                                                       "c.tif"]
    assert all(source[i]["mask"].sum() == 100 for i in range(3))
    cv2.imwrite(str(images / "d.png"), np.zeros((40, 30), np.uint8))
    with pytest.raises(BadSampleError, match="d.png: no mask named d"):
        ImageFolder(images, masks)
    assert len(ImageFolder(images, masks, on_bad_sample="skip")) == 3


def test_a_bad_file_read_in_a_worker_process_is_named(tmp_path, smoke_config):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for stem in "abcd":
        cv2.imwrite(str(images / f"{stem}.png"), np.full((64, 64), 100, np.uint8))
        cv2.imwrite(str(masks / f"{stem}.png"), np.zeros((64, 64), np.uint8))
    (images / "c.png").write_bytes(b"broken")
    data = smoke_config.data.copy_and_resolve_references()
    data.num_workers = 2
    with pytest.raises(BadSampleError, match="c.png: unreadable"):
        next(iter(train_dataset(data, ImageFolder(images, masks), batch_size=4, seed=0)))


# --- end to end --------------------------------------------------------------------------------

@needs_samples
def test_smoke_training_on_the_miniddsm_sample_and_prepare(tmp_path):
    prepared = run_module("msunet.prepare", "--config", "configs/smoke.py",
                          "--config.data.source=miniddsm", f"--config.data.root={SAMPLES}",
                          "--workdir", str(tmp_path), timeout=300)
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    assert "51 images (0 skipped)" in prepared.stdout
    result = run_module("msunet.train", "--config", "configs/smoke.py",
                        "--config.data.source=miniddsm", f"--config.data.root={SAMPLES}",
                        "--workdir", str(tmp_path), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on 36 miniddsm images" in result.stdout
    assert len(list((tmp_path / "cache").iterdir())) == 1, "train reused prepare's cache"
    assert (tmp_path / SPLITS_FILE).is_file() and (tmp_path / "metrics.jsonl").is_file()
