"""bench/compare_searchers.py's compute accounting (trial-seconds, training pixels) and first-rung ranking (Kendall's
tau), the figures that compare progressive resolution with epochs-only ASHA, on hand-made rows."""

import pytest

from bench.compare_searchers import (anytime_rows, compute_to_reach, format_summary, rung_ranking, summarise,
                                     typed)

REFERENCE, PROGRESSIVE = "tpe+asha", "tpe+asha:progressive_resolution=true"
# per strategy and seed: trial-seconds spent after each of 4 epochs, and the best val mIoU so far
CURVES = {
    (REFERENCE, 0): ([10, 20, 30, 40], [0.1, 0.2, 0.3, 0.4]),
    (REFERENCE, 1): ([10, 20, 30, 40], [0.2, 0.3, 0.5, 0.5]),
    (REFERENCE, 2): ([10, 20, 30, 40], [0.3, 0.5, 0.6, 0.6]),
    (PROGRESSIVE, 0): ([3, 6, 16, 26], [0.2, 0.3, 0.5, 0.5]),
    (PROGRESSIVE, 1): ([3, 6, 16, 26], [0.1, 0.2, 0.3, 0.45]),
    (PROGRESSIVE, 2): ([3, 6, 16, 26], [0.4, 0.5, 0.5, 0.7]),
}


def rows():
    return [{"strategy": s, "seed": seed, "trial": 0, "epoch": e, "cumulative_epochs": e, "best_val_miou": best,
             "val_miou": best, "cumulative_seconds": float(seconds), "cumulative_pixels": seconds * 10 ** 6}
            for (s, seed), (times, bests) in CURVES.items() for e, (seconds, best) in enumerate(zip(times, bests), 1)]


def test_trial_seconds_and_pixels_to_reach_the_reference_median_best():
    summary = {row["strategy"]: row for row in summarise(rows(), [], 4, reference=REFERENCE)}
    # reference finals 0.4, 0.5, 0.6: target 0.5. Its median curve: 0.2 at 10 s, 0.3 at 20 s, 0.5 at 30 s -> 30 s; each
    # run spent 40 s. Progressive's: 0.2 at 3 s, 0.3 at 6 s, median(0.5, 0.3, 0.5) = 0.5 at 16 s -> 0.40 of 40 s
    assert (summary[REFERENCE]["seconds_to_reference"], summary[REFERENCE]["seconds_total"]) == (30, 40)
    assert (summary[PROGRESSIVE]["seconds_to_reference"], summary[PROGRESSIVE]["seconds_total"]) == (16, 26)
    assert summary[PROGRESSIVE]["pixels_to_reference"] == 16 * 10 ** 6
    table = format_summary(list(summary.values()), 4)
    assert "Reference: tpe+asha's median final best val mIoU = 0.5000." in table
    assert f"| {PROGRESSIVE} | 26.0 | 16.0 (0.40) | 26.0 | 16.0 (0.40) | - |" in table
    assert f"| {REFERENCE} | 40.0 | 30.0 (0.75) | 40.0 | 30.0 (0.75) | - |" in table


def test_the_median_curve_over_seconds_aligns_seeds_of_different_speeds_and_older_rows_give_none():
    # seed a: 0.4 at 5 s, 0.6 at 10 s; seed b: 0.5 at 8 s. Median (two seeds: the mean) at 5 s: -inf (b has no score
    # yet), at 8 s: 0.45, at 10 s: 0.55 -> 0.5 reached at 10 s, 0.7 never
    a = [{"best_val_miou": 0.4, "cumulative_seconds": 5.0}, {"best_val_miou": 0.6, "cumulative_seconds": 10.0}]
    b = [{"best_val_miou": 0.5, "cumulative_seconds": 8.0}]
    assert compute_to_reach([a, b], 0.5, "cumulative_seconds") == 10.0
    assert compute_to_reach([a, b], 0.7, "cumulative_seconds") is None
    assert compute_to_reach([[{"best_val_miou": 0.9}]], 0.5, "cumulative_seconds") is None  # no compute recorded
    old = typed([{"strategy": "x", "seed": "0", "trial": "0", "cumulative_epochs": "1", "best_val_miou": "0.5"}])
    assert old[0]["cumulative_seconds"] is None and old[0]["val_miou"] is None
    assert "Compute and ranking" not in format_summary(summarise(old, [], 1, reference="x"), 1)


def test_the_first_rung_ranks_trials_by_kendalls_tau_against_their_last_epoch():
    # rung (epoch 2) vs last: a 0.2 -> 0.5, b 0.4 -> 0.3, c 0.3 -> 0.6; d stopped at the rung (left out).
    # pairs: (a, b) discordant, (a, c) concordant, (b, c) discordant -> tau = (1 - 2) / 3
    scores = {"a": {1: 0.1, 2: 0.2, 3: 0.4, 4: 0.5}, "b": {2: 0.4, 4: 0.3}, "c": {2: 0.3, 3: 0.6}, "d": {2: 0.9}}
    seed_rows = [{"trial": t, "epoch": e, "val_miou": v} for t, epochs in scores.items() for e, v in epochs.items()]
    tau, trials = rung_ranking(seed_rows, 2)
    assert tau == pytest.approx(-1 / 3) and trials == 3
    assert rung_ranking(seed_rows[:5], 2) == (None, 1)  # a alone went past the rung: too few to rank


def test_anytime_rows_sum_each_epochs_seconds_and_pixels():
    log = [{"trial_id": "a", "epoch": 1, "val_miou": 0.2, "seconds": 1.5, "train_scale": 0.25, "train_pixels": 100},
           {"trial_id": "a", "epoch": 2, "val_miou": 0.3, "seconds": 4.0, "train_scale": 0.5, "train_pixels": 400},
           {"trial_id": "b", "epoch": 1, "val_miou": 0.1, "seconds": None, "train_scale": None, "train_pixels": None}]
    got = [(r["cumulative_seconds"], r["cumulative_pixels"], r["train_scale"]) for r in anytime_rows("x", 0, log)]
    assert got == [(1.5, 100, 0.25), (5.5, 500, 0.5), (None, None, None)]  # unknown from an epoch that lacks them
