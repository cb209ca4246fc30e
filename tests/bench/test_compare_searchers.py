"""bench/compare_searchers.py's summary and plot, as pure functions of hand-made results.csv rows."""

import math

import pytest

from bench.compare_searchers import (anytime_bands, anytime_rows, format_summary, legend_label, plot_anytime,
                                     run_overrides, summarise)
from search import load_config

BUDGET = 4
# best val mIoU so far after each epoch spent, per strategy and seed (a missing epoch keeps the last value)
CURVES = {
    ("random+fifo", 0): {1: 0.1, 2: 0.3, 3: 0.3, 4: 0.5},
    ("random+fifo", 1): {1: 0.2, 2: 0.2, 3: 0.4, 4: 0.4},
    ("tpe+asha", 0): {1: 0.4, 2: 0.5, 4: 0.6},
    ("tpe+asha", 1): {1: 0.3, 2: 0.45, 3: 0.45, 4: 0.45},
    ("default", 0): {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.4},
    ("default", 1): {4: 0.44},  # its first score came with the last epoch
}
TESTS = {("random+fifo", 0): 0.30, ("random+fifo", 1): 0.40, ("tpe+asha", 0): 0.50, ("tpe+asha", 1): 0.55,
         ("default", 0): "", ("default", 1): 0.20}


def rows():
    return [{"strategy": s, "seed": seed, "trial": 0, "epoch": e, "cumulative_epochs": e, "best_val_miou": best}
            for (s, seed), curve in CURVES.items() for e, best in curve.items()]


def runs():
    return [{"strategy": s, "seed": seed, "test_miou": test} for (s, seed), test in TESTS.items()]


def test_anytime_rows_number_trials_by_first_epoch_and_carry_the_best_so_far():
    log = [{"trial_id": "a", "epoch": 1, "val_miou": 0.2}, {"trial_id": "b", "epoch": 1, "val_miou": 0.5},
           {"trial_id": "a", "epoch": 2, "val_miou": 0.3}, {"trial_id": "b", "epoch": 2, "val_miou": None}]
    got = [(r["trial"], r["epoch"], r["cumulative_epochs"], r["best_val_miou"]) for r in anytime_rows("x", 0, log)]
    assert got == [(0, 1, 1, 0.2), (1, 1, 2, 0.5), (0, 2, 3, 0.5), (1, 2, 4, 0.5)]


def test_summary_medians_ranges_and_the_compute_to_reach_random_fifos_median_best():
    summary = {row["strategy"]: row for row in summarise(rows(), runs(), BUDGET)}
    # random+fifo finals 0.5 and 0.4: median 0.45, the reference. Its median curve: 0.15, 0.25, 0.35, 0.45 ->
    # reached at epoch 4 = 1.00 of the budget
    reference = summary["random+fifo"]
    assert (reference["val_median"], reference["val_min"], reference["val_max"]) == pytest.approx((0.45, 0.4, 0.5))
    assert (reference["test_median"], reference["test_min"], reference["test_max"]) == pytest.approx((0.35, 0.3, 0.4))
    assert (reference["epochs_to_reference"], reference["fraction_of_budget"]) == (4, 1.0)
    # tpe+asha finals 0.6 (epoch 3 holds epoch 2's 0.5) and 0.45: median 0.525; median curve 0.35, 0.475 >= 0.45 at
    # epoch 2 -> 2 / 4 = 0.5
    tpe = summary["tpe+asha"]
    assert (tpe["val_median"], tpe["val_min"], tpe["val_max"]) == pytest.approx((0.525, 0.45, 0.6))
    assert tpe["test_median"] == pytest.approx(0.525)
    assert (tpe["epochs_to_reference"], tpe["fraction_of_budget"]) == (2, 0.5)
    # default: seed 1 has no score before epoch 4, so the median is -inf until then; at 4: (0.4 + 0.44) / 2 = 0.42
    # < 0.45, never reached. One test score (seed 0's is missing): median 0.2
    default = summary["default"]
    assert default["val_median"] == pytest.approx(0.42) and default["epochs_to_reference"] is None
    assert (default["test_median"], default["test_min"], default["test_max"]) == pytest.approx((0.2, 0.2, 0.2))
    table = format_summary(list(summary.values()), BUDGET, ["a note"])
    assert "| tpe+asha | 2 | 0.5250 [0.4500, 0.6000] | 0.5250 [0.5000, 0.5500] | 2 (0.50) |" in table
    assert "| default | 2 | 0.4200 [0.4000, 0.4400] | 0.2000 [0.2000, 0.2000] | not reached |" in table
    assert "median final best val mIoU = 0.4500" in table and "- a note" in table


def test_without_random_fifo_there_is_no_ratio():
    summary = summarise([r for r in rows() if r["strategy"] != "random+fifo"], runs(), BUDGET)
    assert all(row["epochs_to_reference"] is None for row in summary)
    assert "(not run: no ratio)" in format_summary(summary, BUDGET)


def test_anytime_bands_give_median_and_min_max_per_epoch(tmp_path):
    epochs, median, low, high = anytime_bands(rows(), BUDGET)["tpe+asha"]
    assert epochs == [1, 2, 3, 4]
    assert median == pytest.approx([0.35, 0.475, 0.475, 0.525])
    assert low == pytest.approx([0.3, 0.45, 0.45, 0.45]) and high == pytest.approx([0.4, 0.5, 0.5, 0.6])
    assert anytime_bands(rows(), BUDGET)["default"][2][:3] == [-math.inf] * 3
    png = plot_anytime(rows(), BUDGET, tmp_path / "anytime.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_long_strategy_name_is_broken_at_its_options_for_the_legend():
    assert legend_label("tpe+asha") == "tpe+asha"
    assert legend_label("tpe+asha:max_epochs=48:start_from_default=true:max_concurrent_trials=1", width=30) == (
        "tpe+asha:max_epochs=48\n  :start_from_default=true\n  :max_concurrent_trials=1")


def test_seeds_change_the_searcher_and_trials_never_the_splits(tmp_path):
    base = load_config(None, {"space": "terrain", "seed": 7})
    for seed in (0, 1):
        overrides, _ = run_overrides(base, "random+fifo", seed, 20, tmp_path, "sqlite:///x.db")
        cfg = load_config(None, overrides)
        assert (cfg.seed, cfg.splits_seed, cfg.sampler, cfg.scheduler, cfg.epoch_budget) == (seed, 7, "random", "fifo", 20)
    default, _ = run_overrides(base, "default", 1, 20, tmp_path, "sqlite:///x.db")
    recipe, _ = run_overrides(base, "recipe", 1, 20, tmp_path, "sqlite:///x.db")
    for overrides in (default, recipe):  # one trial given the whole budget, nothing left to sample
        cfg = load_config(None, overrides)
        assert (cfg.num_samples, cfg.max_epochs, cfg.scheduler, cfg.splits_seed) == (1, 20, "fifo", 7)
    assert default["space_overrides"]["scheduler"] == "cosine" and recipe["space_overrides"]["loss"] == "focal_tversky"


@pytest.mark.parametrize("space, overrides", [
    ("crop_weed", {"encoder": ["tu-mobilenetv3_small_050", "tu-resnet18"], "batch_size": [4, 8]}),
    ("terrain", {"encoder": ["tu-mobilenetv3_small_050", "tu-resnet18"]}), ("default", None)])
@pytest.mark.parametrize("baseline", ["default", "recipe"])
def test_a_baseline_fixes_every_parameter_and_names_none_its_choices_switch_off(space, overrides, baseline):
    from bench.compare_searchers import fixed_overrides, space_parameters
    from spaces import DEFAULT_MODEL, get_recipes
    wanted = DEFAULT_MODEL if baseline == "default" else (get_recipes(space, overrides) or [DEFAULT_MODEL])[0]
    fixed, _ = fixed_overrides(space, overrides, wanted, baseline)
    sampled, every = space_parameters(space, {**(overrides or {}), **fixed})
    # the search refuses an override the space never samples: early_stop_min_delta once early_stop_patience is None
    assert sampled == set() and set(fixed) <= every


def test_a_strategy_carries_search_options_of_its_own(tmp_path):
    from bench.compare_searchers import parse_strategy
    assert parse_strategy("tpe+asha") == ("tpe+asha", {})
    assert parse_strategy("tpe+asha:n_startup_trials=3:grace_period=1") == (
        "tpe+asha", {"n_startup_trials": 3, "grace_period": 1})
    base = load_config(None, {"num_samples": 6})
    overrides, _ = run_overrides(base, "tpe+asha:n_startup_trials=3", 1, 12, tmp_path, "sqlite:///x.db")
    assert (overrides["sampler"], overrides["scheduler"], overrides["n_startup_trials"], overrides["num_samples"],
            overrides["name"]) == ("tpe", "asha", 3, 12, "tpe+asha:n_startup_trials=3-seed1")


def test_a_strategy_adds_a_searched_dimension_beside_the_configs_overrides(tmp_path):
    base = load_config(None, {"space": "crop_weed", "space_overrides": {"batch_size": [4, 8]}})
    from bench.compare_searchers import split_strategies
    assert split_strategies("tpe+asha,tpe+asha:space.scale=[0.5,1.0],random+fifo") == [
        "tpe+asha", "tpe+asha:space.scale=[0.5,1.0]", "random+fifo"]
    overrides, _ = run_overrides(base, "tpe+asha:space.scale=[0.5,1.0]", 0, 12, tmp_path, "sqlite:///x.db")
    assert overrides["space_overrides"] == {"batch_size": [4, 8], "scale": [0.5, 1.0]}
    assert overrides["name"] == "tpe+asha:space.scale=_0.5_1.0_-seed0"  # a folder name Ray's paths take as it is
    cfg = load_config(None, overrides)
    assert cfg.space_overrides["scale"] == [0.5, 1.0] and base.space_overrides == {"batch_size": [4, 8]}
    with pytest.raises(ValueError, match="space_overrides.scale"):  # the search's own check still applies
        load_config(None, run_overrides(base, "tpe+asha:space.scale=[0,1.0]", 0, 12, tmp_path, "x")[0])


@pytest.mark.parametrize("strategy, message", [("tpe+asha:n_startup_trials", "is not option=value"),
                                               ("tpe+asha:grace_period=0", "grace_period"),
                                               ("tpe+asha:colour=red", "unknown option"),
                                               ("tpe+asha:space.scale=[0,1.0]", "space_overrides.scale")])
def test_a_strategys_bad_options_are_refused_before_any_run(strategy, message, tmp_path, capsys):
    from bench.compare_searchers import main
    config = tmp_path / "search.yaml"
    config.write_text("num_samples: 6\n")
    with pytest.raises(SystemExit) as exit_info:
        main([str(config), "--strategies", strategy, "--budget-epochs", "4", "--out", str(tmp_path / "out"),
              "--baselines", ""])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
