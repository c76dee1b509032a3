"""msunet.export: a prediction written as a mask, an outline overlay and a probability map, at
the input's own size."""

import cv2
import numpy as np

from msunet.data.preprocess import Geometry
from msunet.export import overlay, save_prediction
from msunet.inference import Prediction

SHAPE = (40, 50)


def a_prediction():
    probability = np.zeros(SHAPE, np.float32)
    probability[10:20, 15:30] = 0.9
    probability[30:35, 5:10] = 0.3  # below the threshold: no lesion
    return Prediction(probability, probability >= 0.5, Geometry(SHAPE, (0, 40, 0, 50)))


def test_overlay_outlines_each_lesion_in_red_on_the_grey_image():
    image = np.full(SHAPE, 100, np.uint8)
    mask = a_prediction().mask
    picture = overlay(image, mask)
    assert picture.shape == SHAPE + (3,) and picture.dtype == np.uint8
    red = (picture[..., 2] == 255) & (picture[..., 1] == 0) & (picture[..., 0] == 0)
    assert red[10, 15:30].all() and red[10:20, 15].all(), "the lesion's outline"
    assert not red[15, 22], "an outline, not a filled region"
    assert not red[25:].any() and not red[:8].any()
    np.testing.assert_array_equal(picture[0, 0], [100, 100, 100])
    np.testing.assert_array_equal(overlay(image, np.zeros(SHAPE, bool)),
                                  np.repeat(image[..., None], 3, axis=2))
    deep = overlay(np.full(SHAPE, 4095, np.uint16), mask)  # a 12-bit scan: brightest grey
    np.testing.assert_array_equal(deep[0, 0], [255, 255, 255])


def test_save_prediction_writes_mask_overlay_and_optionally_the_probability(tmp_path):
    prediction, image = a_prediction(), np.full(SHAPE, 100, np.uint8)
    written = save_prediction(prediction, image, tmp_path / "out", "scan")
    assert written == {"mask": tmp_path / "out" / "scan_mask.png",
                       "overlay": tmp_path / "out" / "scan_overlay.png"}
    mask = cv2.imread(str(written["mask"]), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(mask, prediction.mask.astype(np.uint8) * 255)
    np.testing.assert_array_equal(cv2.imread(str(written["overlay"])), overlay(image,
                                                                               prediction.mask))
    with_probability = save_prediction(prediction, image, tmp_path / "out", "scan",
                                       probability=True)
    assert with_probability["probability"] == tmp_path / "out" / "scan_probability.png"
    probability = cv2.imread(str(with_probability["probability"]), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(probability,
                                  np.round(prediction.probability * 255).astype(np.uint8))
