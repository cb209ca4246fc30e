import dataclasses
from pathlib import Path

import pytest
import yaml

from search.config import SearchConfig, load_config
from search.run import SMOKE_TEST, parse_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "spaces" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_config(str(path))
    assert isinstance(cfg, SearchConfig)
    assert cfg.data == yaml.safe_load(path.read_text())["data"]


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
