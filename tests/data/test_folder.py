"""A folder of images and a folder of masks matched by file stem."""

import pathlib

import cv2
import numpy as np
import pytest

from msunet.data import BadSampleError, ImageFolder, Preprocess
from tests.data.conftest import write_folder


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
    assert [source.record(i)["case"] for i in range(3)] == ["a", "b", "c"]
    cv2.imwrite(str(images / "d.png"), np.zeros((40, 30), np.uint8))
    with pytest.raises(BadSampleError, match="d.png: no mask named d"):
        ImageFolder(images, masks)
    assert len(ImageFolder(images, masks, on_bad_sample="skip")) == 3


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


def test_folder_problems_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="images folder .* is not a directory"):
        ImageFolder(tmp_path / "none", tmp_path)
    images, masks = write_folder(tmp_path / "data", count=2)
    cv2.imwrite(str(masks / "scan0.tif"), np.zeros((80, 96), np.uint8))
    with pytest.raises(ValueError, match="two masks with the stem 'scan0'"):
        ImageFolder(images, masks)


def test_from_config_needs_the_images_and_the_masks(smoke_config, tmp_path):
    images, masks = write_folder(tmp_path / "data", count=2)
    data = smoke_config.data.copy_and_resolve_references()
    data.source, data.root = "folder", str(images)
    with pytest.raises(ValueError, match=r"needs data.root \(the images\) and data.masks_dir"):
        ImageFolder.from_config(data)
    data.masks_dir = str(masks)
    source = ImageFolder.from_config(data)
    assert len(source) == 2 and source.masks_dir == masks
