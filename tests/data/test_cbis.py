"""CBIS-DDSM: DICOM images, ROI masks unioned per image and told apart from lesion crops, paths
found although TCIA renamed their folders, and size mismatches reported."""

import numpy as np
import pytest

from msunet.data import CBISDDSM, BadSampleError
from tests.data.conftest import write_dicom


def test_a_root_that_is_not_cbis_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.* is not a directory"):
        CBISDDSM(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="is not a CBIS-DDSM root"):
        CBISDDSM(tmp_path)


def test_cbis_unions_roi_masks_tells_crop_from_mask_and_reports_size_mismatch(tmp_path):
    pytest.importorskip("pydicom", reason="pydicom (extra 'cbis') is not installed")
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
    assert source.record(0)["case"] == "P_00001", "the record needs no DICOM decoding"

    write_dicom(root / "Mass-Training_P_00001_LEFT_CC_2" / "08-07-2016" / "1.000-ROI" / "1-2.dcm",
                np.zeros((100, 80), np.uint8))
    with pytest.raises(BadSampleError, match=r"1-2.dcm: ROI mask is 100x80 but its image .* is "
                                             r"120x80"):
        source[0]
