"""`pretrained` is searched only when space_overrides names it, and only where the sampled encoder has weights."""


from search.config import load_config
from search.fixed import fixed_trial_params
from segtune.data import make_splits, make_synthetic
from fakes import sample_space
from spaces import get_space
from spaces.overrides import pretrained_encoders, validate_space

WITH_WEIGHTS, WITHOUT = "tu-mobilenetv3_small_050", "tu-mobilenetv2_035"  # timm has no weights for the second


def sample(space, count=40):
    return sample_space(space, count, seed=3)


def test_pretrained_is_a_choice_where_the_encoder_has_weights_and_false_where_it_has_none(tmp_path):
    overrides = {"encoder": [WITH_WEIGHTS, WITHOUT], "pretrained": [True, False]}
    cfg = load_config(None, {"space": "smoke", "space_overrides": overrides, "encoder_weights": "imagenet",
                             "weights_cache": str(tmp_path)})
    space = get_space(cfg.space, cfg.space_overrides)
    data = make_synthetic(count=12)
    fixed = fixed_trial_params(cfg, data, make_splits(data, 0.2, 0.0, seed=0)).as_dict()
    validate_space(space, cfg.space_overrides, fixed, cfg.grace_period)  # `pretrained` counts as a parameter
    seen = {(c["encoder"], c["pretrained"]) for c in sample(space)}
    assert seen == {(WITH_WEIGHTS, True), (WITH_WEIGHTS, False), (WITHOUT, False)}
    assert pretrained_encoders(space, overrides) == [WITH_WEIGHTS]


def test_without_the_override_no_space_samples_pretrained_and_every_encoder_starts_from_the_weights():
    space = get_space("default")
    assert not any("pretrained" in c for c in sample(space))
    assert pretrained_encoders(space, None) == ["tu-mobilenetv3_small_050", "tu-resnet18"]
    fixed_off = {"pretrained": False}
    assert pretrained_encoders(get_space("smoke", fixed_off), fixed_off) == []
