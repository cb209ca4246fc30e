"""One-pass image statistics and the pure summaries built on them, against hand-worked numbers."""

from __future__ import annotations

import numpy as np
import pytest

from segtune.data import SegmentationData
from segtune.inspect.statistics import (class_mix_distance, class_shares, find_outliers, measure_images,
                                        rare_classes, robust_z)


def test_measure_images_counts_and_grey_levels():
    # grey 0, 0, 255, 255 -> mean 127.5, std 127.5; mask 0,1 / 255,1 -> class 0: 1, class 1: 2, ignore 1
    image = np.array([[0, 0], [255, 255]], dtype=np.uint8)[:, :, None]
    mask = np.array([[0, 1], [255, 1]], dtype=np.uint8)
    table = measure_images(SegmentationData([image], [mask], ["a"], ("x", "y"), 255))
    assert table.class_counts.tolist() == [[1, 2]] and table.unlabelled.tolist() == [1]
    assert table.mean[0] == pytest.approx(127.5) and table.std[0] == pytest.approx(127.5)
    assert table.sizes == [(2, 2)] and table.channels == [1]


def test_class_shares_and_rare_classes():
    assert class_shares([30, 10, 0]) == [0.75, 0.25, 0.0]
    assert class_shares([0, 0]) == [0.0, 0.0]
    # class 2 is under 1 % of pixels, class 1 is in only 2 images (< 3); rarest share first
    assert rare_classes([0.9, 0.095, 0.005], [10, 2, 5]) == [2, 1]


def test_robust_z_by_hand():
    # median 3, |deviations| 2, 1, 0, 1, 97 -> MAD 1 -> z = 0.6745 (x - 3)
    assert robust_z([1, 2, 3, 4, 100]) == pytest.approx([-1.349, -0.6745, 0, 0.6745, 65.4265])
    # MAD 0 (most values equal): mean absolute deviation 2 stands in -> 10 / (1.2533 * 2) = 3.9895
    assert robust_z([0, 0, 0, 0, 10])[-1] == pytest.approx(3.9895, abs=1e-4)
    assert robust_z([5, 5, 5]).tolist() == [0, 0, 0]


def test_class_mix_distance_by_hand():
    # overall shares (6/8, 2/8); image 0 (1/2, 1/2) -> 0.5 (0.25 + 0.25) = 0.25; image 1 (1, 0) -> 0.25
    assert class_mix_distance([[2, 2], [4, 0]]).tolist() == pytest.approx([0.25, 0.25])


def test_an_all_white_image_is_the_only_outlier():
    rng = np.random.default_rng(0)
    images = [rng.integers(60, 200, (16, 16, 3)).astype(np.uint8) for _ in range(9)] + [np.full((16, 16, 3), 255, np.uint8)]
    masks = [(rng.random((16, 16)) > 0.5).astype(np.uint8) for _ in range(10)]
    data = SegmentationData(images, masks, [f"i{k}" for k in range(10)], ("a", "b"), None)
    found = find_outliers(measure_images(data), z_threshold=3.5)
    assert [o["id"] for o in found] == ["i9"]
    assert {r["feature"] for r in found[0]["reasons"]} == {"mean", "std"}
