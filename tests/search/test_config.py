import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fakes import make_segmentation_data
from search.config import SearchConfig, load_config
from search.fixed import fixed_trial_params
from search.run import SMOKE_TEST, parse_config
from spaces import get_space
from spaces.overrides import validate_space

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "spaces" / "configs").glob("*.yaml"))
SLOW_CONFIGS = {"cluster_search.yaml"}
"""Configs whose space offers the large encoders (densenet121, vgg11_bn): checking it builds each of them once."""


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW_CONFIGS else p
                                  for p in CONFIGS], ids=lambda p: p.name)
def test_every_shipped_config_loads_and_its_space_passes_the_drivers_checks(path):
    cfg = load_config(str(path))
    assert isinstance(cfg, SearchConfig)
    written = yaml.safe_load(path.read_text())["data"]
    assert cfg.data == (written if written == "synthetic" else str(Path(written).expanduser().absolute()))
    # The dataset may not be on this machine: a stand-in with the config's classes gives the settings every trial
    # shares (classes, crop, epochs ...), which is all the space check needs of the data.
    classes = cfg.classes or (*cfg.exclude_from_mean, "class_a", "class_b")
    data = make_segmentation_data([set(range(len(classes)))] * 4, classes=classes)
    fixed = fixed_trial_params(cfg, data, {"train": list(data.names)}).as_dict()
    validate_space(get_space(cfg.space, cfg.space_overrides), cfg.space_overrides, fixed, cfg.grace_period)


@pytest.mark.parametrize("space, overrides, max_epochs, grace", [
    ("default", None, 10, 2), ("crop_weed", None, 10, 2),
    ("terrain", None, 10, 3), ("generic", None, 10, 3),         # up to 2 epochs of cross-entropy warm-up: judged after
    ("terrain", {"warmup_epochs": [0, 1]}, 10, 2),              # the overrides' longest warm-up, 1
    ("terrain", {"warmup_epochs": 0}, 10, 2),                   # no warm-up: the plain default
    ("terrain", None, 2, 2),                                    # never past max_epochs (the space check refuses it)
])
def test_grace_period_left_null_waits_for_the_spaces_loss_warmup(space, overrides, max_epochs, grace):
    cfg = SearchConfig(space=space, space_overrides=overrides, max_epochs=max_epochs)
    assert cfg.grace_period == grace
    assert SearchConfig(space=space, space_overrides=overrides, grace_period=1).grace_period == 1   # given: kept
    assert load_config(None, {"space": space}).grace_period == SearchConfig(space=space).grace_period


def test_relative_data_and_exclude_paths_are_made_absolute_so_the_saved_config_reads_them_anywhere(tmp_path,
                                                                                                   monkeypatch):
    from search.config import save_config
    (tmp_path / "photos").mkdir()
    (tmp_path / "skip.txt").write_text("img_3\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, {"data": "photos", "exclude_file": "skip.txt"})
    assert (cfg.data, cfg.exclude_file) == (str(tmp_path / "photos"), str(tmp_path / "skip.txt"))
    save_config(cfg, tmp_path / "saved.yaml")
    monkeypatch.chdir(tmp_path / "photos")  # e.g. `segtune ensemble` run from another folder
    again = load_config(str(tmp_path / "saved.yaml"))
    assert (again.data, again.exclude_file) == (cfg.data, cfg.exclude_file)
    assert load_config(None, {"data": "synthetic"}).data == "synthetic"


def test_cli_flags_override_the_yaml(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("num_samples: 12\nn_startup_trials: 3\ncrop: [64, 96]\n")
    cfg, resume = parse_config(["--config", str(file), "--num-samples", "20", "--crop", "128x64", "--resume"])
    assert (cfg.num_samples, cfg.n_startup_trials, cfg.crop, resume) == (20, 3, (128, 64), True)


def test_colour_map_flag_parses_several_colours_to_one_class():
    cfg, _ = parse_config(["--colour-map", "0,0,0=0;255,128,0=0;255,255,255=1", "--classes", "background,crop"])
    assert cfg.colour_map == {"0,0,0": 0, "255,128,0": 0, "255,255,255": 1}
    assert cfg.classes == ("background", "crop")


def test_smoke_test_flag_applies_the_small_settings():
    cfg, _ = parse_config(["--smoke-test"])
    assert cfg.num_samples == SMOKE_TEST["num_samples"] and cfg.space == "smoke"


@pytest.mark.parametrize("values, option", [
    ({"unknown_option": 1}, "unknown_option"),
    ({"num_samples": 4, "n_startup_trials": 4}, "n_startup_trials"),
    ({"crop": [50, 64]}, "crop"),
    ({"space": "nope"}, "space"),
    ({"gpus_per_trial": 0.3}, "gpus_per_trial"),
])
def test_bad_options_are_refused_with_their_name(values, option):
    with pytest.raises(ValueError, match=option):
        load_config(None, values)


def test_bad_cli_value_exits_with_message(capsys):
    with pytest.raises(SystemExit, match="grace_period"):
        parse_config(["--grace-period", "0"])


def test_readme_documents_every_option():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [f.name for f in dataclasses.fields(SearchConfig) if f"| `{f.name}` |" not in readme]
    assert not missing, f"README's option table lacks {missing}"


def test_segtune_command_dispatches_to_search(capsys):
    from segtune.cli import main
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--help"])
    assert exit_info.value.code == 0 and "--num-samples" in capsys.readouterr().out
    assert main(["no-such-command"]) == 2


def test_switches_read_true_and_false_from_the_command_line(capsys):
    cfg, _ = parse_config(["--mixed-precision", "false", "--channels-last", "no", "--evaluate-recipes", "true"])
    assert (cfg.mixed_precision, cfg.channels_last, cfg.evaluate_recipes) == (False, False, True)
    with pytest.raises(SystemExit):
        parse_config(["--mixed-precision", "maybe"])
    assert "'maybe' is not true or false" in capsys.readouterr().err


@pytest.mark.parametrize("line, says", [
    ('num_samples: "many"', "option num_samples: 'many' is not an integer"),
    ("crop: null", "option crop: null is not a list of 2 integers"),
    ("seed: abc", "option seed: 'abc' is not an integer"),
    ("max_epochs: 2.5", "option max_epochs: 2.5 is not an integer"),
    ("max_epochs: ten", "option max_epochs: 'ten' is not an integer"),
    ("steps_per_epoch: 0", "option steps_per_epoch: must be >= 1"),
    ("steps_per_epoch: -3", "option steps_per_epoch: must be >= 1"),
    ("time_budget_s: -5", "option time_budget_s: must be > 0"),
    ("space_overrides: {lr: {low: abc, high: 1e-2}}", "option space_overrides.lr: a range needs numbers for low and high"),
    ("name: ../../x", "option name: '../../x' must be a plain folder name"),
    ("name: /tmp/x", "option name: '/tmp/x' must be a plain folder name"),
    ("name: a/b", "option name: 'a/b' must be a plain folder name"),
])
def test_bad_yaml_values_exit_with_a_message_naming_the_option(tmp_path, line, says):
    file = tmp_path / "c.yaml"
    file.write_text(line + "\n")
    with pytest.raises(SystemExit) as stop:
        parse_config(["--config", str(file)])
    assert stop.value.code.startswith(f"segtune search: {says}")


@pytest.mark.parametrize("values, says", [
    ({"sampler": "cmaes"}, "option sampler: 'cmaes' is not one of ['tpe', 'random', 'gp']"),
    ({"scheduler": "pbt"}, "option scheduler: 'pbt' is not one of ['asha', 'hyperband', 'fifo']"),
    ({"tpe_multivariate": False}, "option tpe_group: Optuna's group TPE works only with tpe_multivariate: true"),
    ({"tpe_group": "yes"}, "option tpe_group: 'yes' is not true or false"),
    ({"sampler": "gp", "num_samples": 4, "n_startup_trials": 4}, "option n_startup_trials: 4 must be below "
                                                                 "num_samples (4) or GP never proposes"),
    ({"scheduler": "hyperband", "hyperband_brackets": 0}, "option hyperband_brackets: must be >= 1"),
    # brackets' first rungs at 2, 4, 8, 16 epochs: the last is beyond max_epochs 10
    ({"scheduler": "hyperband", "hyperband_brackets": 4}, "option hyperband_brackets: 4 brackets put the last one's "
                                                          "first rung at grace_period * reduction_factor**3 = 16 epochs"),
    ({"epoch_budget": 0}, "option epoch_budget: must be >= 1 epoch, or null for no limit"),
    ({"split_seed": 1.5}, "option split_seed: 1.5 is not an integer or null"),
])
def test_bad_strategy_options_are_refused_with_what_to_do(values, says):
    with pytest.raises(ValueError) as refused:
        load_config(None, values)
    assert str(refused.value).startswith(says)


def test_strategy_options_build_their_sampler_and_scheduler():
    import optuna
    from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler
    from search.driver import build_scheduler
    from search.searcher import build_sampler
    tpe = build_sampler(load_config(None, {"tpe_group": False, "tpe_multivariate": False}))
    assert isinstance(tpe, optuna.samplers.TPESampler) and not tpe._multivariate and not tpe._group
    assert isinstance(build_sampler(load_config(None, {"sampler": "random"})), optuna.samplers.RandomSampler)
    assert isinstance(build_sampler(load_config(None, {"sampler": "gp"})), optuna.samplers.GPSampler)
    assert isinstance(build_scheduler(load_config(None, {"scheduler": "fifo"})), FIFOScheduler)
    asha = build_scheduler(load_config(None, {}))
    hyperband = build_scheduler(load_config(None, {"scheduler": "hyperband", "hyperband_brackets": 3}))
    assert isinstance(asha, AsyncHyperBandScheduler) and len(asha._brackets) == 1 and len(hyperband._brackets) == 3
    # bracket k's first rung at grace_period 2 * reduction_factor 2 ** k: 2, 4, 8 epochs
    assert [min(rung[0] for rung in bracket._rungs) for bracket in hyperband._brackets] == [2, 4, 8]


def test_a_random_search_needs_no_startup_trials_below_num_samples():
    assert load_config(None, {"sampler": "random", "num_samples": 4, "n_startup_trials": 4}).sampler == "random"


def test_yaml_reads_exponents_without_a_dot_as_numbers(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("time_budget_s: 1e3\nspace_overrides: {lr: {low: 1e-4, high: 1e-2}}\n")
    cfg = load_config(str(file))
    assert cfg.time_budget_s == 1000.0 and cfg.space_overrides == {"lr": {"low": "1e-4", "high": "1e-2"}}


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("num_samples: 4\ncrop: [64, 64\nseed: 1\n")
    with pytest.raises(SystemExit, match=rf"--config {file}, line 3: not valid YAML"):
        parse_config(["--config", str(file)])


def test_a_storage_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "results").write_text("not a folder")
    for path in (tmp_path / "results", tmp_path / "results" / "inside"):
        with pytest.raises(ValueError, match=f"option storage_path: {path} is a file or inside one"):
            load_config(None, {"storage_path": str(path)})


@pytest.mark.parametrize("args, says", [
    (["--crop", "abc"], "segtune search: option crop: 'abc' is not a list of 2 integers"),
    (["--crop", "64x64x64"], "segtune search: option crop: [64, 64, 64] is not a list of 2 integers"),
    (["--resize", "0x0"], "segtune search: option resize: [0, 0] must be [H, W] of at least 32 pixels each"),
])
def test_bad_sizes_on_the_command_line_name_the_option(args, says):
    with pytest.raises(SystemExit) as stop:
        parse_config(args)
    assert stop.value.code.startswith(says)


@pytest.mark.parametrize("args, says", [
    (["--max-epochs", "2.5"], "argument --max-epochs: invalid int value: '2.5'"),
    (["--space-overrides", "lr=abc"], "argument --space-overrides: 'lr=abc' is not a YAML mapping"),
    (["--space-overrides", "{lr: [1"], "argument --space-overrides: '{lr: [1' is not a YAML mapping"),
    (["--colour-map", "0,0,0=zero"], "argument --colour-map: '0,0,0=zero' is not 'R,G,B=class;R,G,B=class'"),
])
def test_bad_flags_are_usage_errors_naming_the_flag(args, says, capsys):
    with pytest.raises(SystemExit) as stop:
        parse_config(args)
    assert stop.value.code == 2 and says in capsys.readouterr().err


def test_space_overrides_flag_reads_yaml_like_the_config_file():
    cfg, _ = parse_config(["--space-overrides", "{lr: {low: 1.0e-4, high: 1.0e-2}, architecture: [Unet, FPN]}"])
    assert cfg.space_overrides == {"lr": {"low": 1e-4, "high": 1e-2}, "architecture": ["Unet", "FPN"]}


def test_a_missing_encoder_weights_file_is_refused_naming_option_and_path(tmp_path):
    with pytest.raises(ValueError, match=f"option encoder_weights: {tmp_path / 'nope.pt'} is not a file"):
        load_config(None, {"encoder_weights": str(tmp_path / "nope.pt")})


def test_a_relative_encoder_weights_path_still_finds_the_file_from_a_trial_folder(tmp_path, monkeypatch):
    import torch
    from search.fixed import fixed_trial_params
    from segtune.data import make_splits, make_synthetic
    from trainables import TrialConfig, build_model
    from trainables.model import load_encoder_weights
    weights = build_model(TrialConfig()).encoder.state_dict()
    (tmp_path / "weights").mkdir()
    torch.save(weights, tmp_path / "weights" / "encoder.pt")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, {"encoder_weights": "weights/encoder.pt"})
    assert cfg.encoder_weights == str(tmp_path / "weights" / "encoder.pt")
    data = make_synthetic(count=12)
    fixed = fixed_trial_params(cfg, data, make_splits(data, 0.2, 0.2, seed=0))
    monkeypatch.chdir(tmp_path / "weights")  # Ray runs each trial in a folder of its own
    load_encoder_weights(build_model(TrialConfig()), fixed.encoder_weights)


def search_args(tmp_path, *more):
    return ["--smoke-test", "--name", "x", "--storage-path", str(tmp_path / "results"),
            "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", *more]


@pytest.mark.parametrize("nodes, more, says", [
    ([{"CPU": 2.0}], ["--cpus-per-trial", "64"], "option cpus_per_trial: 64, but no node of this machine has more "
                                                 "than 2 CPUs"),
    ([{"CPU": 8.0}], ["--gpus-per-trial", "1"], "option gpus_per_trial: 1, but this machine has no GPU"),
    ([{"CPU": 2.0, "GPU": 1.0}, {"CPU": 16.0}], ["--gpus-per-trial", "1", "--cpus-per-trial", "4"],
     "option cpus_per_trial: 4, but no node of this machine with a GPU has more than 2 CPUs"),
])
def test_a_trial_no_node_can_hold_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys, nodes, more, says):
    import ray
    import search.driver
    from search.run import main
    monkeypatch.setattr(search.driver, "start_ray", lambda cfg: None)
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": n} for n in nodes])
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/ray_bootstrap_config.yaml: not an autoscaling cluster
    assert main(search_args(tmp_path, *more)) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "results").exists() and not (tmp_path / "mlflow.db").exists()


def test_an_autoscaling_cluster_counts_the_nodes_it_may_add(tmp_path, monkeypatch):
    import ray
    from search.cluster import check_trial_fits as _check_trial_fits, cluster_nodes as _cluster_nodes
    (tmp_path / "ray_bootstrap_config.yaml").write_text(
        "available_node_types:\n  head.cpu: {resources: {CPU: 0, GPU: 0}}\n  worker.gpu: {resources: {CPU: 4, GPU: 1}}\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 0.0}}])
    cfg = load_config(None, {"gpus_per_trial": 1, "cpus_per_trial": 4, "ray_address": "auto"})
    _check_trial_fits(cfg, _cluster_nodes())  # no worker is up yet, but the autoscaler can add one that fits
    with pytest.raises(ValueError, match="option cpus_per_trial: 5, but no node of the Ray cluster at auto"):
        _check_trial_fits(load_config(None, {"gpus_per_trial": 1, "cpus_per_trial": 5, "ray_address": "auto"}),
                          _cluster_nodes())


def test_exit_codes_2_for_refused_input_1_for_a_failed_run(tmp_path, monkeypatch, capsys):
    import search.driver
    from segtune.cli import main
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--num-samples", "0"]) == 2
    assert "segtune search: option num_samples: must be >= 1" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "no-such-data")]) == 2
    assert main(["ensemble", str(tmp_path / "no-such-experiment")]) == 2
    assert main(["predict", str(tmp_path / "no-bundle"), str(tmp_path), str(tmp_path / "out")]) == 2
    assert "segtune predict:" in capsys.readouterr().err
    monkeypatch.setattr(search.driver, "run_search", lambda cfg, resume: type("Outcome", (), {"best": None})())
    assert main(["search", "--smoke-test"]) == 1  # no trial finished


def test_the_search_script_exits_2_on_a_bad_option():
    script = Path(__file__).resolve().parents[2] / "search" / "run.py"
    done = subprocess.run([sys.executable, str(script), "--num-samples", "0"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip() == "segtune search: option num_samples: must be >= 1"


def test_version_prints_the_installed_package_version(capsys):
    from importlib.metadata import version
    from segtune.cli import main
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"segtune {version('segtune')}"


def test_an_experiment_may_not_take_the_weights_caches_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("SEGTUNE_CACHE", raising=False)
    with pytest.raises(ValueError, match="option name: 'weights' is the folder of the weights cache"):
        load_config(None, {"name": "weights"})
    assert load_config(None, {"name": "weights", "weights_cache": str(tmp_path)}).name == "weights"
