"""The paired bootstrap on two and three test images, where every resample can be enumerated by hand.

Two images give four equally likely ordered resamples: (1, 1), (1, 2), (2, 1), (2, 2). Their summed
matrices are 2 A, A + B, A + B and 2 B, and mIoU does not change when a matrix is doubled, so the
resampled mIoU is mIoU(A) a quarter of the time, mIoU(A + B) half and mIoU(B) a quarter: the 2.5 %
and 97.5 % percentiles are the smaller and the larger of mIoU(A) and mIoU(B).

Three images E1, E2, E3 with a rare class only in E3 give 10 resamples as counts (a, b, c); the 4
without E3 miss the rare class and are discarded, the 6 with it are scored by hand below.
"""

import numpy as np
import pytest

from ensembles.bootstrap import (DRAW_LIMIT, LEVEL, Draws, Interval, bootstrap_intervals, draw_resamples,
                                 resample_counts, resampled_miou, scored_classes)
from segtune.metrics import mean_iou

# baseline, two classes
A = np.array([[3, 1], [0, 4]])  # IoU 3/(4+3-3) = 0.75 and 4/(4+5-4) = 0.8: mIoU 0.775
B = np.array([[2, 0], [2, 0]])  # IoU 2/(2+4-2) = 0.5 and 0/(2+0-0) = 0: mIoU 0.25
# A + B = [[5, 1], [2, 4]]: IoU 5/(6+7-5) = 0.625 and 4/(6+5-4) = 4/7: mIoU 0.598214
# a candidate better on both images
C1 = np.array([[4, 0], [0, 4]])  # mIoU 1.0: gain on image 1 alone 0.225
C2 = np.array([[2, 0], [1, 1]])  # IoU 2/3 and 1/2: mIoU 0.583333, gain on image 2 alone 0.333333
# C1 + C2 = [[6, 0], [1, 5]]: IoU 6/7 and 5/6: mIoU 0.845238, gain over A + B 0.247024

# three images, background (0, excluded), a common class (1) and a rare one (2) labelled in E3 only;
# per image, class 1 TP/union and class 2 TP/union:
E1 = np.array([[2, 0, 0], [0, 2, 0], [0, 0, 0]])  # 2/2, 0/0
E2 = np.array([[2, 0, 0], [1, 1, 0], [0, 0, 0]])  # 1/2, 0/0
E3 = np.array([[2, 0, 0], [0, 1, 0], [0, 2, 1]])  # 1/(1+3-1) = 1/3, 1/(3+1-1) = 1/3
RARE = np.stack([E1, E2, E3])
# TPs and unions add up, so counts (a, b, c) with c >= 1 score class 1 (2a + b + c) / (2a + 2b + 3c) and class 2
# c / 3c = 1/3; whole test set (1, 1, 1): (4/7 + 1/3) / 2 = 19/42
WITH_E3 = {(0, 0, 3): (3 / 9 + 1 / 3) / 2, (1, 0, 2): (4 / 8 + 1 / 3) / 2, (0, 1, 2): (3 / 8 + 1 / 3) / 2,
           (2, 0, 1): (5 / 7 + 1 / 3) / 2, (0, 2, 1): (3 / 7 + 1 / 3) / 2, (1, 1, 1): 19 / 42}
# OTHER calls a class 1 pixel of E1 class 2 (there class 1: 1/2; class 2: 0/1)
OTHER = np.stack([np.array([[2, 0, 0], [0, 1, 1], [0, 0, 0]]), E2, E3])
# = 1/3, 5/12, 17/48, 11/21, 8/21, 19/42; each has chance at least 1 in 19 among the valid resamples, so the
# percentile interval is [1/3, 11/21]. Without E3 (8 of 27 ordered draws) the rare class has zero union; scored on
# class 1 alone, as before the fix, (3, 0, 0) gave 1.0 (1 in 27 draws) and the interval was [1/3, 1.0].


def test_resampled_miou_is_the_miou_of_the_summed_matrices():
    counts = np.array([[2, 0], [1, 1], [0, 2]])
    values = resampled_miou(np.stack([A, B]), counts, [0, 1])
    assert values == pytest.approx([0.775, (0.625 + 4 / 7) / 2, 0.25])
    assert values[1] == pytest.approx(mean_iou(A + B))


def test_scored_classes_are_those_mean_iou_averages():
    matrix = np.array([[5, 0, 0], [1, 3, 0], [0, 0, 0]])  # class 2 absent from truth and prediction
    for exclude, classes in [((), [0, 1]), ((0,), [1]), ((0, 1), [])]:
        assert scored_classes(matrix[None], exclude) == classes, exclude
        got = resampled_miou(matrix[None], np.array([[1]]), classes)[0]
        assert got == pytest.approx(mean_iou(matrix, exclude)), exclude  # (): (5/6 + 3/4) / 2; (0,): 3/4; (0, 1): 0.0


def test_a_resample_missing_a_scored_class_has_no_miou():
    # class 2 is in image 2 only: the resample (2, 0) draws image 1 twice and misses it, (1, 1) holds it
    first, second = np.array([[2, 0, 0], [0, 2, 0], [0, 0, 0]]), np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    values = resampled_miou(np.stack([first, second]), np.array([[2, 0], [1, 1]]), [1, 2])
    assert np.isnan(values[0]) and values[1] == pytest.approx(1.0)  # union of class 2 in image 1 alone: 0


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


def test_a_rare_class_in_one_image_of_three_is_in_every_resample_and_no_longer_inflates_the_interval():
    assert scored_classes(RARE, (0,)) == [1, 2]
    counts, values, draws = draw_resamples({"best_single": RARE}, {"best_single": [1, 2]}, 1000, seed=0)
    assert counts.shape == (1000, 3) and (counts[:, 2] >= 1).all()  # every valid resample draws E3
    assert [value for value in values["best_single"]] == pytest.approx([WITH_E3[tuple(c)] for c in counts])
    assert {tuple(c) for c in counts} == set(WITH_E3)
    assert resampled_miou(RARE, np.array([[3, 0, 0]]), [1]) == pytest.approx([1.0])  # the old rule's top value
    assert np.isnan(resampled_miou(RARE, np.array([[3, 0, 0]]), [1, 2])[0])
    miou = bootstrap_intervals({"best_single": RARE}, "best_single", exclude=(0,), seed=0)["best_single"].miou
    assert (miou.value, miou.low, miou.high) == pytest.approx((19 / 42, 1 / 3, 11 / 21))


def test_a_resample_is_discarded_for_every_candidate_when_one_candidate_misses_a_scored_class():
    # OTHER's class 2 union is non-zero without E3, so alone it discards only (0, 3, 0) (1 in 27); paired with
    # best_single it keeps E3 in every resample
    other = OTHER
    classes = {"best_single": [1, 2], "other": [1, 2]}
    paired, values, draws = draw_resamples({"best_single": RARE, "other": other}, classes, 1000, seed=0)
    alone, _, alone_draws = draw_resamples({"best_single": RARE}, classes, 1000, seed=0)
    assert np.array_equal(paired, alone) and draws == alone_draws
    assert draw_resamples({"other": other}, classes, 1000, seed=0)[2].discarded < draws.discarded / 5
    # whole set: class 1 3/(2+2+3) = 3/7, class 2 1/(1+3) = 1/4: (3/7 + 1/4) / 2 = 19/56, gain 19/56 - 19/42 = -19/168
    gain = bootstrap_intervals({"best_single": RARE, "other": other}, "best_single", (0,), seed=0)["other"].gain
    assert gain.value == pytest.approx(-19 / 168)
    assert np.percentile(values["other"] - values["best_single"], [2.5, 97.5]) == pytest.approx([gain.low, gain.high])


@pytest.mark.parametrize("resamples, seed", [(10, 0), (10, 7), (1000, 0)])
def test_the_draws_discarded_are_those_without_the_rare_image_up_to_the_last_kept(resamples, seed):
    # one seeded stream of resamples, whatever the batches: rows of image indices
    stream = np.random.default_rng(seed).integers(0, 3, (DRAW_LIMIT * resamples, 3))
    with_e3 = np.flatnonzero((stream == 2).any(1))
    discarded = int(with_e3[resamples - 1]) + 1 - resamples
    intervals = bootstrap_intervals({"best_single": RARE}, "best_single", (0,), resamples, seed)
    assert intervals["best_single"].draws == Draws(resamples, resamples, discarded)
    assert intervals["best_single"].draws.note() == f"{discarded} resamples missing a scored class discarded"
    assert intervals["best_single"].draws.reported() == {"discarded": discarded, "valid": resamples}
    if resamples == 1000:  # 8 of 27 draws miss E3: 8/19 x 1000 = 421 expected before the 1000th kept
        assert discarded == pytest.approx(421, abs=60)


# image i holds one pixel of class i, right: a resample holds every class only when it draws each image once
OWN_CLASS = {n: np.stack([np.diag(np.eye(n, dtype=np.int64)[i]) for i in range(n)]) for n in (5, 6)}


def _permutations(images: int, resamples: int, seed: int) -> int:
    """How many of the DRAW_LIMIT x resamples draws of seed's stream draw every image once."""
    stream = np.random.default_rng(seed).integers(0, images, (DRAW_LIMIT * resamples, images))
    return int(sum(len(set(row)) == images for row in stream))


def test_too_few_valid_resamples_give_nan_intervals_and_say_why():
    valid = _permutations(6, 100, seed=0)  # 6!/6^6 = 1.5 % of 2000 draws: about 31
    assert valid < 50
    intervals = bootstrap_intervals({"best_single": OWN_CLASS[6], "mean": OWN_CLASS[6]}, "best_single", resamples=100)
    reason = f"no interval: {valid} of 2000 resamples held every scored class, fewer than half the 100 asked for"
    for name in ("best_single", "mean"):
        miou, gain, draws = intervals[name].miou, intervals[name].gain, intervals[name].draws
        assert draws == Draws(100, valid, 2000 - valid, reason) and draws.note() == reason
        assert miou.value == 1.0 and np.isnan(miou.low) and np.isnan(miou.high)  # the point value stays
        assert gain.value == 0.0 and np.isnan(gain.low) and gain.verdict() == ""
    assert intervals["mean"].draws.reported() == {"discarded": 2000 - valid, "valid": valid, "reason": reason}


def test_between_half_and_all_valid_the_intervals_use_those_and_say_how_many():
    valid = _permutations(5, 100, seed=0)  # 5!/5^5 = 3.8 % of 2000 draws: about 77
    assert 50 <= valid < 100
    intervals = bootstrap_intervals({"best_single": OWN_CLASS[5]}, "best_single", resamples=100)["best_single"]
    assert intervals.draws == Draws(100, valid, 2000 - valid)
    note = f"{2000 - valid} resamples missing a scored class discarded, intervals from {valid} of 100"
    assert intervals.draws.note() == note
    assert (intervals.miou.low, intervals.miou.high) == (1.0, 1.0)  # every permutation sums to the identity


def _miou_before_the_fix(matrices: np.ndarray, counts: np.ndarray, exclude: tuple) -> np.ndarray:
    """resampled_miou as it was before resamples missing a scored class were discarded: each resample scored on the
    classes present in it (non-zero union), less `exclude`."""
    images, classes, _ = matrices.shape
    summed = (counts @ matrices.reshape(images, classes * classes).astype(np.float64)).reshape(-1, classes, classes)
    true_positive = np.diagonal(summed, axis1=1, axis2=2)
    union = summed.sum(1) + summed.sum(2) - true_positive
    keep = [c for c in range(classes) if c not in set(exclude)]
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, true_positive / np.maximum(union, 1), np.nan)[:, keep]
    present = ~np.isnan(iou)
    return np.where(present.any(1), np.nansum(iou, 1) / np.maximum(present.sum(1), 1), 0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_with_every_class_in_every_image_nothing_is_discarded_and_the_intervals_are_unchanged(seed):
    rng = np.random.default_rng(100 + seed)
    matrices = {name: rng.integers(1, 6, (7, 4, 4)) for name in ("best_single", "mean", "greedy")}
    counts = resample_counts(7, 500, seed)  # the plain bootstrap's resamples: the first 500 of the stream
    for exclude in [(), (0,)]:
        before = {name: _miou_before_the_fix(m, counts, exclude) for name, m in matrices.items()}
        # the vectorised scores are each resample's mean_iou, up to rounding in the last bit
        assert before["mean"][:20] == pytest.approx([mean_iou(np.tensordot(c, matrices["mean"], 1), exclude)
                                                     for c in counts[:20]], abs=1e-12)
        intervals = bootstrap_intervals(matrices, "best_single", exclude, resamples=500, seed=seed)
        for name, got in intervals.items():
            quantiles = [(1 - LEVEL) / 2 * 100, (1 + LEVEL) / 2 * 100]  # as computed there: 2.5000000000000022
            expected = [*np.percentile(before[name], quantiles),
                        *np.percentile(before[name] - before["best_single"], quantiles)]
            assert [got.miou.low, got.miou.high, got.gain.low, got.gain.high] == expected  # exactly
            assert got.draws == Draws(500, 500, 0) and got.draws.note() == "" and got.draws.reported() == {}


def test_resamples_below_one_are_refused():
    with pytest.raises(ValueError, match="0 resamples; use at least 1"):
        bootstrap_intervals({"best_single": np.stack([A, B])}, "best_single", resamples=0)
