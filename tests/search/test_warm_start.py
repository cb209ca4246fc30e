"""Warm starts (search/warm_start.py): configs mapped into a space, earlier searches read and picked, the plan's
order and cap, refusals before compute; and, with the dummy trainable, the queued configs are the first trials."""

import csv
import json
import math

import mlflow
import pytest

import search
import search.report
from fakes import dummy_trainable
from search import load_config
from search.config import save_config
from search.run import SMOKE_TEST
from search.run import main as search_main
from search.warm_start import Mapped, default_start, map_into_space, plan_warm_start, starting_points
from segtune.paths import experiment_paths
from spaces import get_space
from spaces.presets import DEFAULT_MODEL, RECIPES


def little_space(trial):
    """FPN fixes its depth; focal_gamma only under the focal loss."""
    architecture = trial.suggest_categorical("architecture", ["Unet", "FPN"])
    fixed = {"encoder_depth": 5} if architecture == "FPN" else None
    if fixed is None:
        trial.suggest_int("encoder_depth", 3, 4)
    if trial.suggest_categorical("loss", ["dice", "focal"]) == "focal":
        trial.suggest_float("focal_gamma", 0.5, 3.0)
    trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    trial.suggest_categorical("batch_size", [4, 8])
    return fixed


def test_a_config_is_clipped_into_ranges_and_loses_what_the_space_lacks():
    mapped = map_into_space({"architecture": "Unet", "encoder_depth": 5, "loss": "focal", "focal_gamma": 4.0,
                             "lr": 0.05, "batch_size": 8, "cutmix": 0.25}, little_space)
    assert mapped == Mapped({"architecture": "Unet", "encoder_depth": 4, "loss": "focal", "focal_gamma": 3.0,
                             "lr": 0.01, "batch_size": 8}, dropped=["cutmix"],
                            clipped={"encoder_depth": [5, 4], "focal_gamma": [4.0, 3.0], "lr": [0.05, 0.01]})


def test_a_parameter_the_branch_does_not_ask_is_dropped_and_one_the_space_fixes_alike_is_not():
    mapped = map_into_space({"architecture": "FPN", "encoder_depth": 5, "loss": "dice", "focal_gamma": 2.0,
                             "lr": 1e-3, "batch_size": 4}, little_space)
    assert mapped == Mapped({"architecture": "FPN", "loss": "dice", "lr": 1e-3, "batch_size": 4},
                            dropped=["focal_gamma"])
    depth_differs = map_into_space({"architecture": "FPN", "encoder_depth": 3, "loss": "dice", "lr": 1e-3,
                                    "batch_size": 4}, little_space)
    assert depth_differs.dropped == ["encoder_depth"]


def test_a_choice_the_space_does_not_offer_skips_the_config():
    mapped = map_into_space({"architecture": "Unet", "encoder_depth": 3, "loss": "dice", "lr": 1e-3,
                             "batch_size": 16}, little_space)
    assert mapped.params is None
    assert mapped.skipped == "batch_size=16 is not among the space's choices [4, 8]"
    assert map_into_space({"architecture": "Unet", "loss": "dice", "lr": "fast"}, little_space).skipped == \
        "lr='fast' is not a number, the space's range is [0.0001, 0.01]"


def test_parameters_the_config_lacks_are_left_to_the_sampler_and_its_values_kept_on_every_branch():
    # no loss: focal_gamma is asked on the focal branch only, so it is kept (clipped) for the sampler to use there
    mapped = map_into_space({"architecture": "Unet", "focal_gamma": 9.0, "lr": 1e-3}, little_space)
    assert mapped == Mapped({"architecture": "Unet", "focal_gamma": 3.0, "lr": 1e-3},
                            clipped={"focal_gamma": [9.0, 3.0]}, sampled=["encoder_depth", "loss", "batch_size"])


def test_the_default_model_keeps_what_the_space_offers_and_leaves_a_value_it_does_not_to_the_sampler():
    mapped, refusals = default_start(little_space)
    # loss cross_entropy_dice is not among [dice, focal]: sampled, and focal_gamma takes TrialConfig's 2.0 there
    assert mapped == Mapped({"architecture": "Unet", "encoder_depth": 4, "focal_gamma": 2.0, "lr": 1e-3,
                             "batch_size": 8},
                            dropped=["encoder", "optimizer", "weight_decay", "scheduler", "scheduler_warmup_epochs",
                                     "flip"], sampled=["loss"])
    assert refusals == ["loss='cross_entropy_dice' is not among the space's choices ['dice', 'focal']"]


def test_a_search_starts_from_the_default_model_then_the_recipes_and_queues_each_once(monkeypatch):
    crop_weed = {"space": "crop_weed", "space_overrides": {"encoder": ["tu-resnet18", "resnet18"]}}
    recipe = RECIPES["crop_weed"][0]
    space = get_space(crop_weed["space"], crop_weed["space_overrides"])
    assert starting_points(load_config(None, crop_weed), space) == ([recipe], [])  # off unless asked
    points, lines = starting_points(load_config(None, {**crop_weed, "start_from_default": True}), space)
    # first: ASHA lets the first trial to reach an empty rung go on, so the first queued config runs longest
    assert {k: points[0][k] for k in DEFAULT_MODEL} == DEFAULT_MODEL and points[1:] == [recipe]
    assert points[0]["shift_scale_rotate"] == 0.0 and points[0]["early_stop_patience"] is None  # the rest: defaults
    assert lines == ["start_from_default: segtune's default model queued first, before 1 recipe(s): "
                     "architecture='Unet', encoder='tu-resnet18', encoder_depth=4, loss='cross_entropy_dice', "
                     "optimizer='adamw', lr=0.001, weight_decay=0.0001, scheduler='cosine', "
                     "scheduler_warmup_epochs=1, batch_size=8, flip=True"]
    only_one, _ = starting_points(load_config(None, {**crop_weed, "start_from_default": True, "num_samples": 1}), space)
    assert only_one == points[:1]  # one trial: the default, not the recipe
    no_recipes, _ = starting_points(load_config(None, {**crop_weed, "start_from_default": True,
                                                       "evaluate_recipes": False}), space)
    assert no_recipes == points[:1]
    monkeypatch.setitem(RECIPES, "crop_weed", [recipe, points[0]])
    assert starting_points(load_config(None, {**crop_weed, "start_from_default": True}), space) == \
        ([points[0], recipe], ["start_from_default: segtune's default model is a recipe of this preset, queued once, first"])


def test_a_boolean_is_not_taken_for_a_number_among_choices():
    def space(trial):
        trial.suggest_categorical("flip", [False, True])
        trial.suggest_categorical("oversample_rare", [1.0, 2.0])
    assert map_into_space({"flip": 1, "oversample_rare": 1.0}, space).skipped.startswith("flip=1 is not among")
    # 2 and 2.0 are one number: the space's own choice is queued
    assert map_into_space({"flip": True, "oversample_rare": 2}, space).params == {"flip": True, "oversample_rare": 2.0}


# --------------------------------------------------------------------------- earlier searches, made by hand

FINGERPRINT = {"version": 1, "images": 10, "classes": ["background", "crop", "weed"], "class_shares": [0.9, 0.05, 0.05],
               "size": [64, 64], "channels": 3, "histogram": [[1.0, 0.0]] * 3}
CONFIG = {"architecture": "Unet", "encoder_depth": 3, "loss": "dice", "lr": 1e-3, "batch_size": 4}


def earlier_search(storage, name, rows, fingerprint=FINGERPRINT):
    """An experiment folder with a config, leaderboard.csv rows (val_miou, params) best first, and a fingerprint."""
    paths = experiment_paths(str(storage), name).create()
    save_config(load_config(None, {"name": name, "storage_path": str(storage)}), paths.config)
    with paths.leaderboard.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "trial_id", "outcome", "epochs", "val_miou", "checkpoint", "params", "error"])
        for rank, (val_miou, params) in enumerate(rows, 1):
            writer.writerow([rank, f"{name}_{rank}", "failed" if math.isnan(val_miou) else "completed", 3,
                             f"{val_miou:.5f}", "", json.dumps(params), ""])
    if fingerprint is not None:
        paths.fingerprint.write_text(json.dumps(fingerprint))
    return paths


def warm_config(storage, **options):
    return load_config(None, {"storage_path": str(storage), "num_samples": 10, "n_startup_trials": 3,
                              "warm_start_configs": 2, **options})


def plan(cfg, recipes=()):
    return plan_warm_start(cfg, experiment_paths(cfg.storage_path, "new"), little_space, FINGERPRINT, list(recipes))


def two_earlier_searches(storage):
    recipe = {**CONFIG, "lr": 3e-4}
    earlier_search(storage, "a", [(float("nan"), CONFIG), (0.8, CONFIG), (0.7, {**recipe, "cutmix": 0.5}),
                                  (0.6, {**CONFIG, "lr": 2e-3})])
    earlier_search(storage, "b", [(0.75, {**CONFIG, "batch_size": 16}), (0.5, {**CONFIG, "lr": 0.5}),
                                  (0.4, {**CONFIG, "lr": 4e-3})])
    return recipe


def test_each_searchs_best_in_turn_mapped_deduplicated_against_the_recipes_and_capped(tmp_path):
    recipe = two_earlier_searches(tmp_path)
    warm = plan(warm_config(tmp_path, warm_start="a,b"), [recipe])
    # 2 best finished trials of each, in turn: a's best, b's best, a's second, b's second (failed rows left out)
    seen = [(entry.trial, entry.status) for entry in warm.entries]
    assert seen == [("a_2", "queued"), ("b_1", "skipped"), ("a_3", "duplicate"), ("b_2", "queued")]
    assert warm.entries[1].reason == "batch_size=16 is not among the space's choices [4, 8]"
    assert warm.entries[2].reason == "the same config as recipe 1" and warm.entries[2].dropped == ["cutmix"]
    assert warm.entries[3].clipped == {"lr": [0.5, 0.01]}
    assert warm.queued == [CONFIG, {**CONFIG, "lr": 0.01}] and warm.limit == 3
    assert [s["experiment"] for s in warm.sources] == ["a", "b"]
    assert warm.mlflow_params() == {"warm_start_sources": "a,b", "warm_start_queued": 2}
    text = warm.describe(recipes=1)
    assert "warm start (a,b): 2 config(s) from 2 earlier search(es) queued after 1 starting config(s), at most 3" in text
    assert "  queued b trial b_2 (val mIoU 0.5000): clipped lr 0.5 -> 0.01" in text


def test_no_more_than_n_startup_trials_are_queued(tmp_path):
    two_earlier_searches(tmp_path)
    warm = plan(warm_config(tmp_path, warm_start="a,b", n_startup_trials=1))
    assert [entry.status for entry in warm.entries] == ["queued", "skipped", "over the cap", "over the cap"]
    assert warm.queued == [CONFIG]


def test_an_experiment_folder_may_be_given_instead_of_a_name(tmp_path):
    two_earlier_searches(tmp_path / "elsewhere")
    warm = plan(warm_config(tmp_path, warm_start=str(tmp_path / "elsewhere" / "b")))
    assert warm.queued == [{**CONFIG, "lr": 0.01}] and warm.sources[0]["folder"] == str(tmp_path / "elsewhere" / "b")


def test_auto_picks_the_alike_search_over_the_unlike_and_says_why(tmp_path):
    unlike = {**FINGERPRINT, "classes": ["cell", "membrane"], "class_shares": [0.5, 0.5], "channels": 1,
              "histogram": [[0.0, 1.0]]}
    earlier_search(tmp_path, "like", [(0.5, CONFIG)], {**FINGERPRINT, "size": [128, 128]})
    earlier_search(tmp_path, "unlike", [(0.9, {**CONFIG, "lr": 5e-3})], unlike)
    earlier_search(tmp_path, "before_fingerprints", [(0.9, CONFIG)], fingerprint=None)
    warm = plan(warm_config(tmp_path, warm_start="auto"))
    assert [(s["experiment"], s["distance"]) for s in warm.sources] == [("like", 0.05)]  # size (1 + 1) / 4 * 0.1
    assert warm.queued == [CONFIG]
    text = warm.describe(recipes=0)
    assert "  like: distance 0.050 (classes 0, channels 0, size 0.500, intensity 0): alike" in text
    # classes 1 * 0.4 + channels 1 * 0.2 + intensity 1 * 0.3
    assert "  unlike: distance 0.900 (classes 1.000, channels 1.000, size 0, intensity 1.000): unlike" in text
    assert "1 without fingerprint.json (made before searches saved one), not compared: before_fingerprints" in text


def test_auto_with_nothing_alike_starts_cold_and_says_so(tmp_path):
    earlier_search(tmp_path, "like", [(0.5, CONFIG)], {**FINGERPRINT, "size": [128, 128]})
    warm = plan(warm_config(tmp_path, warm_start="auto", warm_start_max_distance=0.01))
    assert warm.queued == [] and warm.sources == []
    assert "is within warm_start_max_distance 0.01: the search starts cold" in warm.describe(recipes=0)


@pytest.mark.parametrize("values, says", [
    ({"warm_start": "auto,a"}, "auto picks the earlier searches itself"),
    ({"warm_start": "a", "n_startup_trials": 0}, "set n_startup_trials >= 1"),
    ({"warm_start": "auto", "storage_path": "s3://bucket/results"}, "local storage_path"),
    ({"warm_start_configs": 0}, "warm_start_configs"),
    ({"warm_start_max_distance": 2}, "warm_start_max_distance"),
])
def test_bad_warm_start_options_are_refused_naming_them(values, says):
    with pytest.raises(ValueError, match="option warm_start") as refused:
        load_config(None, values)
    assert says in str(refused.value)


def test_an_earlier_search_that_is_not_there_is_refused_before_any_compute(tmp_path, capsys):
    earlier_search(tmp_path, "empty", [(float("nan"), CONFIG)])
    common = ["--smoke-test", "--storage-path", str(tmp_path), "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    assert search_main([*common, "--warm-start", "nope", "--name", "new"]) == 2
    refusal = capsys.readouterr().err
    assert "option warm_start: 'nope' is no segtune experiment" in refusal and str(tmp_path / "nope") in refusal
    assert search_main([*common, "--warm-start", "empty", "--name", "new"]) == 2
    assert "has no finished trial to start from" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # no experiment, no MLflow store


# --------------------------------------------------------------------------- real searches, dummy trainable

def dummy_search(folder, name, **options):
    cfg = load_config(None, {**SMOKE_TEST, "max_epochs": 2, "grace_period": 1, "max_concurrent_trials": 1,
                             "storage_path": str(folder), "tracking_uri": f"sqlite:///{folder}/mlflow.db",
                             "name": name, **options})
    return search.run_search(cfg, trainable=dummy_trainable())


@pytest.mark.slow  # three dummy searches on the session's Ray: about 30 s on 2 busy CPUs
def test_the_queued_configs_are_the_first_trials_the_search_runs(local_ray, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(search.report, "plot_predictions", lambda *args: None)
    earlier = dummy_search(tmp_path, "earlier", num_samples=4, n_startup_trials=2)
    best, second = earlier.leaderboard[:2]
    assert 2e-3 <= second.params["lr"] <= 8e-3  # so the recipe below keeps its lr under the narrower range
    monkeypatch.setitem(RECIPES, "smoke", [second.params])  # a recipe equal to the earlier search's second best
    narrower = {"lr": {"low": 2e-3, "high": 8e-3}}
    outcome = dummy_search(tmp_path, "warm", num_samples=5, n_startup_trials=2, warm_start_configs=2,
                           warm_start="earlier", space_overrides=narrower, start_from_default=True)
    warm = json.loads(outcome.paths.warm_start.read_text())
    assert [(c["trial"], c["status"]) for c in warm["configs"]] == [(best.trial_id, "queued"),
                                                                     (second.trial_id, "duplicate")]
    queued = [{**best.params, "lr": min(max(best.params["lr"], 2e-3), 8e-3)}]
    assert [c["params"] for c in warm["configs"][:1]] == queued
    first = sorted(outcome.searcher.study.trials, key=lambda trial: trial.number)[:3]
    default = default_start(get_space("smoke", narrower))[0].params  # lr 1e-3 clipped to 2e-3; the encoder sampled
    assert default == {"architecture": "Unet", "loss": "cross_entropy_dice", "lr": 2e-3}
    # segtune's default model, then the recipe, then the warm config
    assert {k: first[0].params[k] for k in default} == default
    assert [trial.params for trial in first[1:]] == [second.params, *queued]
    started = list(dict.fromkeys(row.split(",")[0] for row in outcome.paths.epochs.read_text().splitlines()[1:]))
    assert started[:3] == [trial.user_attrs["ray_trial_id"] for trial in first]  # one trial at a time
    assert "warm start (earlier): 1 config(s) from 1 earlier search(es) queued after 2 starting config(s)" in \
        capsys.readouterr().out
    assert json.loads(outcome.paths.fingerprint.read_text())["classes"] == ["background", "plant", "stem", "rare"]
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    params = client.get_run(outcome.parent_run_id).data.params
    assert (params["warm_start_sources"], params["warm_start_queued"]) == ("earlier", "1")
    assert {"fingerprint.json", "warm_start.json"} <= {a.path for a in client.list_artifacts(outcome.parent_run_id)}
    auto = dummy_search(tmp_path, "auto", num_samples=3, n_startup_trials=2, warm_start_configs=1, warm_start="auto")
    sources = json.loads(auto.paths.warm_start.read_text())["sources"]
    assert {(s["experiment"], s["distance"]) for s in sources} == {("earlier", 0.0), ("warm", 0.0)}  # the same data
