"""Paired bootstrap over test images: a 95 % interval on each candidate's test mIoU and on its gain.

Test images are drawn with replacement, as many as there are; a resample's mIoU comes from the
per-image confusion matrices summed over the images drawn, exactly as the whole test set's mIoU
comes from their sum. Every candidate is scored on the same resamples, so the interval of a gain
over the baseline (the best single model) measures how the two differ on the same images, not how
each one's score spreads. Intervals are percentile intervals: the (1 - level) / 2 and
(1 + level) / 2 quantiles of the resampled values; the point value is that of the whole test set.

    intervals = bootstrap_intervals({"best_single": m1, "mean": m2}, "best_single", exclude=(0,))
    intervals["mean"].gain.low > 0      # the gain can be told from zero
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segtune.metrics import mean_iou

RESAMPLES = 1000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    value: float
    """On the whole test set."""
    low: float
    high: float

    def verdict(self) -> str:
        """How a gain's interval reads: above zero, below zero, or cannot be told from zero."""
        if not self.low <= self.high:  # NaN: nothing to tell
            return ""
        if self.low > 0:
            return "above zero"
        if self.high < 0:
            return "below zero"
        return "cannot be told from zero"


@dataclass(frozen=True)
class CandidateIntervals:
    miou: Interval
    gain: Interval
    """Over the baseline, paired: both scored on the same resamples."""


def resample_counts(images: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, images): how often each image is drawn in each resample of `images` draws with replacement."""
    draws = np.random.default_rng(seed).integers(0, images, (resamples, images))
    counts = np.zeros((resamples, images), dtype=np.int64)
    np.add.at(counts, (np.arange(resamples)[:, None], draws), 1)
    return counts


def resampled_miou(matrices: np.ndarray, counts: np.ndarray, exclude: tuple[int, ...] = ()) -> np.ndarray:
    """mIoU of each resample: (N, K, K) per-image matrices, (R, N) counts -> (R,), as segtune.metrics.mean_iou
    scores a matrix (classes absent from truth and prediction left out; 0 when none is left)."""
    images, classes, _ = matrices.shape
    summed = (counts @ matrices.reshape(images, classes * classes).astype(np.float64)).reshape(-1, classes, classes)
    true_positive = np.diagonal(summed, axis1=1, axis2=2)
    union = summed.sum(1) + summed.sum(2) - true_positive
    keep = [c for c in range(classes) if c not in set(exclude)]
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, true_positive / np.maximum(union, 1), np.nan)[:, keep]
    present = ~np.isnan(iou)
    return np.where(present.any(1), np.nansum(iou, 1) / np.maximum(present.sum(1), 1), 0.0)


def bootstrap_intervals(matrices: dict[str, np.ndarray], baseline: str | None, exclude: tuple[int, ...] = (),
                        resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL) -> dict[str, CandidateIntervals]:
    """Each candidate's test mIoU and gain over `baseline`, with percentile intervals from the same resamples.

    matrices: candidate -> (N, K, K) confusion matrices of the N test images, in the same image order for all.
    With no test image, or no baseline among the candidates, the values are NaN.
    """
    images = len(next(iter(matrices.values()))) if matrices else 0
    nan = Interval(float("nan"), float("nan"), float("nan"))
    if images == 0:
        return {name: CandidateIntervals(nan, nan) for name in matrices}
    counts = resample_counts(images, resamples, seed)
    quantiles = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    values = {name: resampled_miou(m, counts, exclude) for name, m in matrices.items()}
    points = {name: mean_iou(m.sum(0), exclude) for name, m in matrices.items()}
    intervals = {}
    for name, resampled in values.items():
        miou = Interval(points[name], *map(float, np.percentile(resampled, quantiles)))
        gain = nan
        if baseline in values:
            gain = Interval(points[name] - points[baseline],
                            *map(float, np.percentile(resampled - values[baseline], quantiles)))
        intervals[name] = CandidateIntervals(miou, gain)
    return intervals
