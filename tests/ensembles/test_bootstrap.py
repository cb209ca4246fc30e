"""The paired bootstrap on two test images, where every resample can be enumerated by hand.

Two images give four equally likely ordered resamples: (1, 1), (1, 2), (2, 1), (2, 2). Their summed
matrices are 2 A, A + B, A + B and 2 B, and mIoU does not change when a matrix is doubled, so the
resampled mIoU is mIoU(A) a quarter of the time, mIoU(A + B) half and mIoU(B) a quarter: the 2.5 %
and 97.5 % percentiles are the smaller and the larger of mIoU(A) and mIoU(B).
"""

import numpy as np
import pytest

from ensembles.bootstrap import Interval, bootstrap_intervals, resample_counts, resampled_miou
from segtune.metrics import mean_iou

# baseline, two classes
A = np.array([[3, 1], [0, 4]])  # IoU 3/(4+3-3) = 0.75 and 4/(4+5-4) = 0.8: mIoU 0.775
B = np.array([[2, 0], [2, 0]])  # IoU 2/(2+4-2) = 0.5 and 0/(2+0-0) = 0: mIoU 0.25
# A + B = [[5, 1], [2, 4]]: IoU 5/(6+7-5) = 0.625 and 4/(6+5-4) = 4/7: mIoU 0.598214
# a candidate better on both images
C1 = np.array([[4, 0], [0, 4]])  # mIoU 1.0: gain on image 1 alone 0.225
C2 = np.array([[2, 0], [1, 1]])  # IoU 2/3 and 1/2: mIoU 0.583333, gain on image 2 alone 0.333333
# C1 + C2 = [[6, 0], [1, 5]]: IoU 6/7 and 5/6: mIoU 0.845238, gain over A + B 0.247024


def test_resampled_miou_is_the_miou_of_the_summed_matrices():
    counts = np.array([[2, 0], [1, 1], [0, 2]])
    values = resampled_miou(np.stack([A, B]), counts)
    assert values == pytest.approx([0.775, (0.625 + 4 / 7) / 2, 0.25])
    assert values[1] == pytest.approx(mean_iou(A + B))


def test_resampled_miou_leaves_out_excluded_and_absent_classes_as_mean_iou_does():
    matrix = np.array([[5, 0, 0], [1, 3, 0], [0, 0, 0]])  # class 2 absent from truth and prediction
    for exclude in [(), (0,), (0, 1)]:
        got = resampled_miou(matrix[None], np.array([[1]]), exclude)[0]
        assert got == pytest.approx(mean_iou(matrix, exclude)), exclude  # (0,): 3/4; (0, 1): 0.0


def test_resample_counts_draw_each_image_as_often_as_chance_says():
    counts = resample_counts(2, 4000, seed=3)
    assert (counts.sum(1) == 2).all()
    share = {pattern: np.mean([tuple(c) == pattern for c in counts]) for pattern in [(2, 0), (1, 1), (0, 2)]}
    assert share[(2, 0)] == pytest.approx(0.25, abs=0.03) and share[(1, 1)] == pytest.approx(0.5, abs=0.03)
    assert np.array_equal(counts, resample_counts(2, 4000, seed=3))  # seeded


def test_intervals_on_two_images_are_the_enumerated_extremes_and_the_gain_is_paired():
    intervals = bootstrap_intervals({"best_single": np.stack([A, B]), "mean": np.stack([C1, C2])}, "best_single",
                                    resamples=1000, seed=0)
    base, better = intervals["best_single"], intervals["mean"]
    assert (base.miou.value, base.miou.low, base.miou.high) == pytest.approx((0.598214, 0.25, 0.775), abs=1e-6)
    assert (better.miou.value, better.miou.low, better.miou.high) == pytest.approx((0.845238, 0.583333, 1.0), abs=1e-6)
    # the two mIoU intervals overlap, yet on every resample the candidate wins: 0.225, 0.247024 or 0.333333
    assert (better.gain.value, better.gain.low, better.gain.high) == pytest.approx((0.247024, 0.225, 0.333333), abs=1e-6)
    assert better.gain.verdict() == "above zero"
    assert (base.gain.low, base.gain.high) == (0.0, 0.0)


def test_a_gain_that_changes_sign_between_images_cannot_be_told_from_zero():
    # the candidate is perfect on image 1 (gain 0.225) and scores B's 0.25 against a perfect baseline on image 2
    perfect = np.array([[2, 0], [0, 2]])
    intervals = bootstrap_intervals({"base": np.stack([A, perfect]), "other": np.stack([C1, B])}, "base", seed=1)
    gain = intervals["other"].gain
    assert gain.low == pytest.approx(0.25 - 1.0) and gain.high == pytest.approx(0.225)
    assert gain.verdict() == "cannot be told from zero"
    assert Interval(-0.1, -0.2, -0.01).verdict() == "below zero"


def test_without_test_images_or_baseline_the_values_are_nan():
    empty = bootstrap_intervals({"best_single": np.zeros((0, 2, 2))}, "best_single")
    assert np.isnan(empty["best_single"].miou.value) and empty["best_single"].gain.verdict() == ""
    no_baseline = bootstrap_intervals({"mean": np.stack([A, B])}, "best_single")
    assert no_baseline["mean"].miou.value == pytest.approx(0.598214, abs=1e-6)
    assert np.isnan(no_baseline["mean"].gain.low)
