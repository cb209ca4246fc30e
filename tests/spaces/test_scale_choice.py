"""`scale` is searched only when space_overrides names it; scale and progressive options are refused before any
compute, naming the option."""

import pytest

from search.config import load_config
from search.fixed import fixed_trial_params
from segtune.data import make_splits, make_synthetic
from fakes import sample_space
from spaces import get_space
from spaces.overrides import validate_space


def sample(space, count=40):
    return sample_space(space, count, seed=3)


def checked_space(overrides: dict, **options):
    cfg = load_config(None, {"space": "default", "space_overrides": overrides, **options})
    data = make_synthetic(count=12)
    fixed = fixed_trial_params(cfg, data, make_splits(data, 0.2, 0.0, seed=0)).as_dict()
    space = get_space(cfg.space, cfg.space_overrides)
    validate_space(space, cfg.space_overrides, fixed, cfg.grace_period)  # `scale` counts as a parameter
    return space, fixed


@pytest.mark.parametrize("rule, expected", [([0.25, 0.5, 1.0], {0.25, 0.5, 1.0}), (0.5, {0.5})])
def test_scale_in_the_overrides_is_searched_among_its_choices_or_fixed(rule, expected):
    space, _ = checked_space({"scale": rule})
    assert {c["scale"] for c in sample(space)} == expected


def test_a_scale_range_is_sampled_within_it():
    space, _ = checked_space({"scale": {"low": 0.3, "high": 0.6}})
    values = [c["scale"] for c in sample(space)]
    assert min(values) >= 0.3 and max(values) <= 0.6 and len(set(values)) > 10


def test_without_the_override_no_space_samples_scale():
    assert not any("scale" in c for c in sample(get_space("default")))


@pytest.mark.parametrize("rule", [[0.5, 1.5], 0, {"low": 0.5, "high": 2}, ["half"]])
def test_a_scale_outside_zero_to_one_is_refused_naming_the_option(rule):
    with pytest.raises(ValueError, match=r"option space_overrides.scale: .* each in \(0, 1\]"):
        load_config(None, {"space_overrides": {"scale": rule}})


def test_progressive_resolution_trains_the_first_rung_at_the_reduced_scale():
    _, fixed = checked_space({"scale": [0.5, 1.0]}, progressive_resolution=True, grace_period=2, max_epochs=4,
                             progressive_scale=0.25)
    assert (fixed["progressive_epochs"], fixed["progressive_scale"]) == (2, 0.25)
    _, off = checked_space({"scale": [0.5, 1.0]})
    assert off["progressive_epochs"] == 0  # off by default


def test_progressive_options_are_refused_naming_the_option():
    with pytest.raises(ValueError, match=r"option progressive_scale: 1.0 must be in \(0, 1\)"):
        load_config(None, {"progressive_scale": 1.0})
    with pytest.raises(ValueError, match=r"option progressive_resolution: .* set grace_period below max_epochs \(3\)"):
        load_config(None, {"progressive_resolution": True, "grace_period": 3, "max_epochs": 3})
    with pytest.raises(ValueError, match="option progressive_resolution: .* is not true or false"):
        load_config(None, {"progressive_resolution": "yes"})
