"""The data fingerprint (segtune/inspect/fingerprint.py): what it measures, and the distance, by hand."""

import math

import numpy as np
import pytest

from segtune.data import SegmentationData
from segtune.inspect import data_fingerprint, fingerprint_distance, format_report, inspect_dataset
from segtune.inspect.fingerprint import distance_parts


def three_images() -> SegmentationData:
    """Two 2x2 images and one 4x2 (16 pixels per channel in all):
    channel 0: 0 on the 2x2 images, 32 on the 4x2 one; channel 1: 100 everywhere; channel 2: 255 on the first
    image, 0 elsewhere. Masks: the first all background; the second crop, crop / weed, ignore; the third
    background but one weed pixel."""
    images = [np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2, 3), np.uint8), np.zeros((4, 2, 3), np.uint8)]
    images[2][..., 0] = 32
    for image in images:
        image[..., 1] = 100
    images[0][..., 2] = 255
    masks = [np.zeros((2, 2), np.uint8), np.array([[1, 1], [2, 255]], np.uint8), np.zeros((4, 2), np.uint8)]
    masks[2][3, 1] = 2
    return SegmentationData(images, masks, ["a", "b", "c"], ("background", "crop", "weed"), 255)


def test_the_fingerprint_holds_class_shares_median_size_and_each_channels_grey_levels():
    fingerprint = data_fingerprint(three_images())
    # labelled pixels: background 4 + 0 + 7 = 11, crop 2, weed 1 + 1 = 2, of 15 (the ignore pixel left out)
    assert fingerprint["class_shares"] == pytest.approx([11 / 15, 2 / 15, 2 / 15], abs=1e-6)
    assert fingerprint["classes"] == ["background", "crop", "weed"] and fingerprint["images"] == 3
    assert fingerprint["size"] == [2, 2] and fingerprint["channels"] == 3  # heights 2, 2, 4; widths 2, 2, 2
    # channel 0: 8 pixels at 0 and 8 at 32 -> mean 16, std 16; channel 1: 100, std 0; channel 2: 4 of 16 at 255
    # -> mean 63.75, std 255 * sqrt(1/4 * 3/4) = 110.42
    assert fingerprint["channel_mean"] == [16.0, 100.0, 63.75]
    assert fingerprint["channel_std"] == [16.0, 0.0, pytest.approx(255 * math.sqrt(3) / 4, abs=0.005)]
    # 16 bins of 16 grey levels: 0 -> bin 0, 32 -> bin 2, 100 -> bin 6, 255 -> bin 15
    histogram = np.array(fingerprint["histogram"])
    assert histogram.shape == (3, 16)
    assert histogram[0, [0, 2]].tolist() == [0.5, 0.5] and histogram[1, 6] == 1.0
    assert histogram[2, [0, 15]].tolist() == [0.75, 0.25] and histogram.sum(1).tolist() == [1.0, 1.0, 1.0]


A = {"classes": ["background", "crop", "weed"], "class_shares": [0.9, 0.05, 0.05], "size": [64, 64], "channels": 3,
     "histogram": [[1, 0], [1, 0], [0.5, 0.5]]}
B = {"classes": ["background", "plant"], "class_shares": [0.7, 0.3], "size": [128, 32], "channels": 3,
     "histogram": [[0.5, 0.5], [1, 0], [0.5, 0.5]]}
GREY = {**A, "channels": 1, "histogram": [[0.75, 0.25]]}


def test_the_distance_adds_its_weighted_parts_worked_by_hand():
    # classes matched by name: |0.9 - 0.7| + |0.05 - 0| + |0.05 - 0| + |0 - 0.3| = 0.6, halved: 0.3
    # size: |log2(64 / 128)| + |log2(64 / 32)| = 2, over 4: 0.5
    # intensity: channel 0 half its mass moved (0.5), channels 1 and 2 equal (0): mean 1/6
    assert distance_parts(A, B) == pytest.approx({"classes": 0.3, "channels": 0.0, "size": 0.5, "intensity": 1 / 6})
    # 0.4 * 0.3 + 0.2 * 0 + 0.1 * 0.5 + 0.3 / 6 = 0.12 + 0.05 + 0.05
    assert fingerprint_distance(A, B) == pytest.approx(0.22)
    assert fingerprint_distance(B, A) == pytest.approx(0.22) and fingerprint_distance(A, A) == 0


def test_grey_against_rgb_compares_the_channel_averaged_histograms():
    # A averaged over its channels: [(1 + 1 + 0.5) / 3, 0.5 / 3] = [5/6, 1/6] against [3/4, 1/4]: 0.5 * (1/12 + 1/12)
    assert distance_parts(A, GREY) == pytest.approx({"classes": 0.0, "channels": 1.0, "size": 0.0, "intensity": 1 / 12})
    assert fingerprint_distance(A, GREY) == pytest.approx(0.2 + 0.3 / 12)


def test_no_class_name_in_common_is_the_whole_class_part():
    other = {**A, "classes": ["cell", "membrane"], "class_shares": [0.5, 0.5]}
    assert distance_parts(A, other)["classes"] == pytest.approx(1.0)
    assert fingerprint_distance(A, other) == pytest.approx(0.4)


def test_segtune_inspect_reports_the_fingerprint():
    data = three_images()
    report = inspect_dataset(data)
    assert report["fingerprint"] == data_fingerprint(data)
    text = format_report(report)
    assert "3 images, median size 2 x 2, 3 channel(s)" in text
    assert "class shares: background 73.33%, crop 13.33%, weed 13.33%" in text
    assert "channel 2: mean 63.8, std 110.4" in text
