"""What the data tests share: the real Mini-DDSM sample (tests that need it are skipped, saying
so, when it is absent), a one-case copy of it, small image folders and DICOM files made on the
spot, and the check that `build_source` names a bad input."""

import shutil

import cv2
import numpy as np
import openpyxl
import pytest
from hypothesis import HealthCheck, settings

from msunet.data import BadSampleError, MiniDDSM, build_source
from msunet.workdir import Workdir
from tests.conftest import SAMPLES

needs_samples = pytest.mark.skipif(
    not (SAMPLES / "DataWMask.xlsx").is_file(),
    reason=f"the Mini-DDSM sample is not at {SAMPLES} (set MSUNET_SAMPLES to its folder)")

# Fuzzing: few examples (test time), no deadline (first calls import and warm caches), and
# tmp_path may be shared by a test's examples.
FUZZ = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def iou(a, b):
    a, b = a > 0, b > 0
    return (a & b).sum() / (a | b).sum()


@pytest.fixture(scope="session")
def samples():
    return MiniDDSM(SAMPLES)


@pytest.fixture
def data_config(smoke_config):
    config = smoke_config.copy_and_resolve_references()
    config.data.source = "miniddsm"
    config.data.root = str(SAMPLES)
    return config.data


# --- a dataset made on the spot ----------------------------------------------------------------

def write_folder(root, count=8, shape=(80, 96)):
    """An image-folder dataset in `root`: `count` grey scans (a bright breast against the left
    edge, one small bright lesion) in images/, their filled masks (0/255) in masks/."""
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    rng = np.random.default_rng(0)
    height, width = shape
    for i in range(count):
        image = rng.integers(5, 20, shape, dtype=np.uint8)
        cv2.ellipse(image, (0, height // 2), (width * 3 // 4, height * 2 // 5), 0, 0, 360, 150, -1)
        mask = np.zeros(shape, np.uint8)
        mask[20 + i:28 + i, 10 + 2 * i:18 + 2 * i] = 255
        image[mask > 0] = 220
        assert cv2.imwrite(str(images / f"scan{i}.png"), image)
        assert cv2.imwrite(str(masks / f"scan{i}.png"), mask)
    return images, masks


def folder_data(smoke_config, images, masks):
    """The smoke config's data section reading the image folder `images` with `masks`."""
    data = smoke_config.data.copy_and_resolve_references()
    data.source, data.root, data.masks_dir = "folder", str(images), str(masks)
    return data


# --- a one-case Mini-DDSM copy, and bad inputs ---------------------------------------------------

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
    """Building the train split of `data` (a run in tmp_path/work) fails with `match`."""
    with pytest.raises((BadSampleError, FileNotFoundError, ValueError), match=match):
        build_source(data, "train", **Workdir(tmp_path / "work").data_paths(data))


def write_dicom(path, pixels):
    """A grey MONOCHROME2 DICOM file holding `pixels` (uint8 or uint16); needs pydicom."""
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
