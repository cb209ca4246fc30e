"""bench/warm_start.py: the summary as pure functions of hand-made rows, and the runs' options."""

import json

import pytest

from bench.warm_start import arm_overrides, format_arms, source_overrides, summarise_arms
from fakes import CLASSES, texture, texture_mask, write_png
from search import load_config, search_inputs
from segtune.data.exclusions import read_exclusions

BUDGET = 4
# best val mIoU so far after each epoch spent, per arm and seed (a missing epoch keeps the last value)
CURVES = {
    ("cold", 0): {1: 0.2, 2: 0.4, 3: 0.5, 4: 0.6},
    ("cold", 1): {1: 0.3, 2: 0.5, 4: 0.5},
    ("warm-like", 0): {1: 0.58, 2: 0.6, 3: 0.6, 4: 0.7},
    ("warm-like", 1): {1: 0.4, 2: 0.45, 3: 0.48, 4: 0.49},
    ("warm-unlike", 0): {1: 0.1, 4: 0.3},
    ("warm-unlike", 1): {2: 0.5},
}
TESTS = {("cold", 0): 0.55, ("cold", 1): 0.45, ("warm-like", 0): 0.6, ("warm-like", 1): 0.44,
         ("warm-unlike", 0): 0.3, ("warm-unlike", 1): ""}


def rows():
    return [{"strategy": arm, "seed": seed, "trial": 0, "epoch": e, "cumulative_epochs": e, "best_val_miou": best}
            for (arm, seed), curve in CURVES.items() for e, best in curve.items()]


def runs():
    return [{"strategy": arm, "seed": seed, "test_miou": test} for (arm, seed), test in TESTS.items()]


def test_epochs_to_reach_95_percent_of_the_same_seeds_cold_best_and_the_paired_gains():
    summary = {row["arm"]: row for row in summarise_arms(rows(), runs(), BUDGET)}
    # cold finals 0.6 and 0.5: targets 0.57 and 0.475, which cold itself reaches at epochs 4 and 2
    cold = summary["cold"]
    assert cold["epochs_to_reach"] == {0: 4, 1: 2} and cold["median_ratio"] == 1.0
    # warm-like reaches 0.57 at epoch 1 (0.58) and 0.475 at epoch 3 (0.48): ratios 1/4 and 3/2, median 0.875
    like = summary["warm-like"]
    assert like["epochs_to_reach"] == {0: 1, 1: 3} and like["cold_epochs_to_reach"] == {0: 4, 1: 2}
    assert like["median_ratio"] == pytest.approx(0.875) and like["median_epochs_to_reach"] == 2
    # finals 0.7 and 0.49 against 0.6 and 0.5: gains +0.1 and -0.01; tests 0.6 - 0.55 and 0.44 - 0.45
    assert like["val"] == pytest.approx({"median": 0.595, "min": 0.49, "max": 0.7})
    assert like["val_gain"] == pytest.approx({"median": 0.045, "min": -0.01, "max": 0.1})
    assert like["test_gain"] == pytest.approx({"median": 0.02, "min": -0.01, "max": 0.05})
    # warm-unlike never reaches 0.57 on seed 0 (0.3), reaches 0.475 at epoch 2 on seed 1 (ratio 2/2): the median
    # over seeds of [never, 2] is never; one test score (seed 1's is missing): one paired test gain, 0.3 - 0.55
    unlike = summary["warm-unlike"]
    assert unlike["epochs_to_reach"] == {0: None, 1: 2} and unlike["unreached"] == 1
    assert unlike["median_epochs_to_reach"] is None and unlike["median_ratio"] == 1.0
    assert unlike["test_gain"] == pytest.approx({"median": -0.25, "min": -0.25, "max": -0.25})
    source = {"source": "like", "experiment": "/x/source-like", "final_best_val_miou": "0.61", "distance": 0.058}
    table = format_arms(list(summary.values()), [source], BUDGET, ["a note"])
    assert ("| warm-like | 2 | 0.5950 [0.4900, 0.7000] | 0.5200 [0.4400, 0.6000] | +0.0450 [-0.0100, +0.1000] | "
            "+0.0200 [-0.0100, +0.0500] | 0: 1/4, 1: 3/2 | 0.88 |") in table
    assert "| warm-unlike | 2 | 0.4000 [0.3000, 0.5000] | 0.3000 [0.3000, 0.3000] |" in table
    assert "| 0: -/4, 1: 2/2 | 1.00 |" in table
    assert "| like | source-like | 0.6100 | 0.058 |" in table and "- a note" in table


def test_a_source_on_the_targets_data_leaves_out_the_targets_val_and_test_images(tmp_path):
    data = tmp_path / "data"
    for i in range(10):  # different pictures: no near-duplicate group to keep in one split
        write_png(data / "images" / f"t{i}.png", texture(i))
        write_png(data / "masks" / f"t{i}.png", texture_mask(texture(i)))
    (data / "classes.json").write_text(json.dumps({"names": list(CLASSES), "ignore_index": 255}))
    base = load_config(None, {"data": str(data), "val_fraction": 0.2, "test_fraction": 0.2})
    _, splits, _ = search_inputs(base)
    overrides = source_overrides(base, base, "like", 12, tmp_path / "out")
    held = read_exclusions(overrides["exclude_file"])
    assert sorted(held) == sorted(splits["val"] + splits["test"]) and len(held) == 4
    assert (overrides["name"], overrides["seed"], overrides["epoch_budget"], overrides["warm_start"]) == \
        ("source-like", 100, 12, [])
    other = load_config(None, {"data": "synthetic"})
    unlike = source_overrides(base, other, "unlike", 12, tmp_path / "out")
    assert "exclude_file" not in unlike and unlike["seed"] == 200  # not the like source's: other startup configs


def test_the_warm_arms_start_from_their_source_and_cold_from_none(tmp_path):
    base = load_config(None, {"num_samples": 5})
    sources = {"like": {"experiment": "/x/source-like"}, "unlike": {"experiment": "/x/source-unlike"}}
    like = arm_overrides(base, "warm-like", 1, 20, tmp_path, sources)
    assert (like["warm_start"], like["name"], like["seed"], like["num_samples"]) == (["/x/source-like"],
                                                                                      "warm-like-seed1", 1, 20)
    assert arm_overrides(base, "cold", 1, 20, tmp_path, sources)["warm_start"] == []
    assert load_config(None, like).warm_start == ("/x/source-like",)
