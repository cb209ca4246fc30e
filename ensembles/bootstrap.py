"""Paired bootstrap over test images: a 95 % interval on each candidate's test mIoU and on its gain.

Test images are drawn with replacement, as many as there are; a resample's mIoU comes from the
per-image confusion matrices summed over the images drawn, exactly as the whole test set's mIoU
comes from their sum. Every candidate is scored on the same resamples, so the interval of a gain
over the baseline (the best single model) measures how the two differ on the same images, not how
each one's score spreads. Intervals are percentile intervals: the (1 - level) / 2 and
(1 + level) / 2 quantiles of the resampled values; the point value is that of the whole test set.

The bootstrap is conditional on every scored class being present in the resample. A candidate's
point value (segtune.metrics.mean_iou of the summed matrix) averages the classes with a non-zero
union on the whole test set, `exclude` left out: its scored classes (every class labelled in the
test set, for every candidate; a class never labelled there only for the candidates that predict
it, at IoU 0). Each resample is scored on those same classes, and one in which any candidate's
scored class has zero union (the class's images not drawn, and no pixel predicted as it in the
images drawn) is discarded for every candidate, as its mIoU over that class set is undefined; the
candidates and their gains stay paired on the same resamples. Scoring such a resample over the
classes left, as this module did before, averages another class set than the point value (a class
in one of 7-21 test images is missing from 34-36 % of the resamples, one in two from 10-12 %) and
pulls the interval towards the mIoU without that class. Discarded draws are replaced from the same
seeded stream, in batches, until `resamples` valid ones are in hand or DRAW_LIMIT x `resamples`
have been drawn; with fewer than half the requested resamples valid by then, the intervals are NaN
and `Draws.reason` says why. Where every scored class has a non-zero union in every test image,
nothing is discarded and the intervals are those of the plain bootstrap, draw for draw.

    intervals = bootstrap_intervals({"best_single": m1, "mean": m2}, "best_single", exclude=(0,))
    intervals["mean"].gain.low > 0      # the gain can be told from zero
    intervals["mean"].draws.note()      # "" when no resample was discarded
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from segtune.metrics import iou_per_class, mean_iou

RESAMPLES = 1000
LEVEL = 0.95
DRAW_LIMIT = 20
"""At most DRAW_LIMIT x resamples draws are made to find `resamples` that hold every scored class."""
MIN_VALID = 0.5
"""With fewer than this share of the resamples asked for valid at the draw limit, the intervals are NaN."""


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
class Draws:
    """How the resamples behind the intervals were drawn; the same for every candidate."""
    requested: int
    valid: int
    """Resamples the intervals come from: the first `requested` draws in which every scored class is present."""
    discarded: int
    """Draws missing a scored class, up to the last valid one kept (all drawn, when too few were valid)."""
    reason: str = ""
    """Why the intervals are NaN, when fewer than MIN_VALID x requested draws were valid."""

    def note(self) -> str:
        """The report's phrase on the draws: empty when none was discarded."""
        if self.reason or not self.discarded:
            return self.reason
        text = f"{self.discarded} resamples missing a scored class discarded"
        return text + (f", intervals from {self.valid} of {self.requested}" if self.valid < self.requested else "")

    def reported(self) -> dict:
        """What report.json's bootstrap entry adds: nothing when no draw was discarded."""
        if not self.discarded and not self.reason:
            return {}
        return {"discarded": self.discarded, "valid": self.valid, **({"reason": self.reason} if self.reason else {})}


@dataclass(frozen=True)
class CandidateIntervals:
    miou: Interval
    gain: Interval
    """Over the baseline, paired: both scored on the same resamples."""
    draws: Draws


def resample_counts(images: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, images): how often each image is drawn in each resample of `images` draws with replacement;
    the first `resamples` resamples of seed's stream, which draw_resamples continues."""
    return _counts(np.random.default_rng(seed).integers(0, images, (resamples, images)))


def _counts(draws: np.ndarray) -> np.ndarray:
    counts = np.zeros(draws.shape, dtype=np.int64)
    np.add.at(counts, (np.arange(len(draws))[:, None], draws), 1)
    return counts


def scored_classes(matrices: np.ndarray, exclude: tuple[int, ...] = ()) -> list[int]:
    """The classes the whole test set's mIoU averages (segtune.metrics.mean_iou of the (N, K, K) per-image matrices
    summed): those with a non-zero union, less `exclude`."""
    ious = iou_per_class(matrices.sum(0))
    return [c for c in range(len(ious)) if c not in set(exclude) and not np.isnan(ious[c])]


def resampled_miou(matrices: np.ndarray, counts: np.ndarray, classes: list[int]) -> np.ndarray:
    """mIoU over `classes` of each resample: (N, K, K) per-image matrices, (R, N) counts -> (R,); NaN for a resample
    in which one of `classes` has zero union (undefined over that class set); 0 with no class, as mean_iou."""
    if not classes:
        return np.zeros(len(counts))
    # true positives and unions add up over images, so a resample's are its counts times the images'
    true_positive = np.diagonal(matrices, axis1=1, axis2=2)[:, classes].astype(np.float64)
    union = matrices.sum(1)[:, classes] + matrices.sum(2)[:, classes] - true_positive
    counts = counts.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((counts @ true_positive) / (counts @ union)).mean(1)


def draw_resamples(matrices: dict[str, np.ndarray], classes: dict[str, list[int]], resamples: int,
                   seed: int) -> tuple[np.ndarray, dict[str, np.ndarray], Draws]:
    """The first `resamples` draws of seed's stream in which every candidate's `classes` have a non-zero union:
    their (R, N) counts, each candidate's (R,) mIoU on them, and the Draws. Drawn in batches of `resamples`
    (the stream does not depend on the batch), at most DRAW_LIMIT batches."""
    images = len(next(iter(matrices.values())))
    rng = np.random.default_rng(seed)
    valid, counts, values = [], [], []
    while sum(map(len, counts)) < resamples and len(valid) < DRAW_LIMIT:
        batch = _counts(rng.integers(0, images, (resamples, images)))
        scored = np.stack([resampled_miou(m, batch, classes[name]) for name, m in matrices.items()])
        ok = ~np.isnan(scored).any(0)
        valid.append(ok)
        counts.append(batch[ok])
        values.append(scored[:, ok])
    kept = np.flatnonzero(np.concatenate(valid))[:resamples]
    looked = kept[-1] + 1 if len(kept) == resamples else resamples * len(valid)
    draws = Draws(resamples, len(kept), int(looked) - len(kept))
    return np.concatenate(counts)[:resamples], dict(zip(matrices, np.concatenate(values, 1)[:, :resamples])), draws


def bootstrap_intervals(matrices: dict[str, np.ndarray], baseline: str | None, exclude: tuple[int, ...] = (),
                        resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL) -> dict[str, CandidateIntervals]:
    """Each candidate's test mIoU and gain over `baseline`, with percentile intervals from the same resamples.

    matrices: candidate -> (N, K, K) confusion matrices of the N test images, in the same image order for all.
    Each candidate is scored on its scored classes, on resamples in which every candidate's are all present.
    With no test image, or no baseline among the candidates, the values are NaN; with fewer than MIN_VALID x
    `resamples` such resamples at the draw limit, the intervals are NaN and `draws.reason` says why.
    """
    if resamples < 1:
        raise ValueError(f"bootstrap_intervals: {resamples} resamples; use at least 1 (option --bootstrap of "
                         "segtune ensemble: at least 100)")
    images = len(next(iter(matrices.values()))) if matrices else 0
    nan = Interval(float("nan"), float("nan"), float("nan"))
    if images == 0:
        return {name: CandidateIntervals(nan, nan, Draws(resamples, 0, 0)) for name in matrices}
    _, values, draws = draw_resamples(matrices, {name: scored_classes(m, exclude) for name, m in matrices.items()},
                                      resamples, seed)
    if draws.valid < MIN_VALID * resamples:
        draws = replace(draws, reason=f"no interval: {draws.valid} of {draws.valid + draws.discarded} resamples "
                                      f"held every scored class, fewer than half the {resamples} asked for")
    points = {name: mean_iou(m.sum(0), exclude) for name, m in matrices.items()}

    def interval(point: float, resampled: np.ndarray) -> Interval:
        if draws.reason:
            return Interval(point, float("nan"), float("nan"))
        return Interval(point, *map(float, np.percentile(resampled, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])))
    intervals = {}
    for name, resampled in values.items():
        gain = nan
        if baseline in values:
            gain = interval(points[name] - points[baseline], resampled - values[baseline])
        intervals[name] = CandidateIntervals(interval(points[name], resampled), gain, draws)
    return intervals
