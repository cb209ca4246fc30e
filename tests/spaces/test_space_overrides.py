import pytest

from search.config import load_config
from search.fixed import fixed_trial_params
from segtune.data import make_splits, make_synthetic
from fakes import sample_space
from spaces import get_recipes, get_space, longest_warmup
from spaces.overrides import validate_space


@pytest.fixture(scope="module")
def fixed():
    data = make_synthetic(count=12)
    return fixed_trial_params(load_config(None, {}), data, make_splits(data, 0.2, 0.0, seed=0)).as_dict()


def sample(space, count=40):
    return sample_space(space, count, seed=1)


def test_yaml_override_narrows_widens_and_fixes(tmp_path, fixed):
    file = tmp_path / "c.yaml"
    file.write_text(
        "space: terrain\ngrace_period: 3\nspace_overrides:\n"
        "  architecture: [Unet, FPN]\n"            # narrow a choice
        "  encoder: [tu-resnet18, resnet18]\n"     # widen: resnet18 is not in the terrain preset
        "  lr: {low: 1.0e-4, high: 2.0e-4}\n"      # a new range
        "  batch_size: 16\n")                      # fixed
    cfg = load_config(str(file))
    space = get_space(cfg.space, cfg.space_overrides)
    validate_space(space, cfg.space_overrides, fixed, cfg.grace_period)
    configs = list(sample(space))
    assert {c["architecture"] for c in configs} == {"Unet", "FPN"}
    assert {c["encoder"] for c in configs} == {"tu-resnet18", "resnet18"}
    assert all(1e-4 <= c["lr"] <= 2e-4 for c in configs)
    assert {c["batch_size"] for c in configs} == {16}
    recipe = get_recipes("terrain", cfg.space_overrides)[0]
    assert "lr" not in recipe and recipe["architecture"] == "Unet" and recipe["batch_size"] == 16


@pytest.mark.parametrize("overrides, message", [
    ({"learning_rate": [0.1]}, "learning_rate"),                # not a parameter of the space
    ({"architecture": {"low": 1, "high": 2}}, "architecture"),  # a range for a choice
    ({"architecture": ["NoSuchNet"]}, "NoSuchNet"),             # a value a trial would reject
    ({"lr": {"low": 1e-2, "high": 1e-4}}, "low < high"),
    ({"architecture": ["DeepLabV3Plus"], "encoder": ["vgg11_bn"]}, "cannot be built"),
])
def test_invalid_overrides_are_refused_before_any_compute(overrides, message, fixed):
    with pytest.raises(ValueError, match=message):
        validate_space(get_space("generic", overrides), overrides, fixed, grace_period=3)


def test_grace_period_must_come_after_the_loss_switch(fixed):
    with pytest.raises(ValueError, match="grace_period"):
        validate_space(get_space("terrain"), None, fixed, grace_period=2)
    validate_space(get_space("terrain"), None, fixed, grace_period=3)


@pytest.mark.parametrize("name", ["default", "smoke", pytest.param("crop_weed", marks=pytest.mark.slow), "terrain",
                                  pytest.param("generic", marks=pytest.mark.slow)])
def test_each_spaces_declared_warmup_is_the_longest_it_samples(fixed, name):
    """longest_warmup (what a null grace_period waits for) read from the presets' declarations, checked against the
    space as validate_space samples it: judged one epoch after it passes, at it refused."""
    warmup = longest_warmup(name)
    assert warmup == {"terrain": 2, "generic": 2}.get(name, 0)
    validate_space(get_space(name), None, fixed, grace_period=warmup + 1)
    if warmup:
        with pytest.raises(ValueError, match=f"up to {warmup} epoch"):
            validate_space(get_space(name), None, fixed, grace_period=warmup)


def test_a_dataset_no_trial_can_take_is_not_blamed_on_space_overrides(fixed):
    with pytest.raises(ValueError) as error:
        validate_space(get_space("default"), None, {**fixed, "num_classes": 1, "class_names": ["background"],
                                                    "class_pixel_counts": [10], "exclude_from_mean": []}, 2)
    assert "num_classes 1 must be >= 2" in str(error.value) and "space_overrides" not in str(error.value)


@pytest.mark.parametrize("encoder", [["tu-resnet18", "tu-resnet19"], "resnet19", ["no_such_encoder"]])
def test_an_encoder_neither_smp_nor_timm_knows_is_refused_naming_it(fixed, encoder):
    # smp's scSE probe swallows the error of an unknown encoder, so without this check it failed in every trial
    overrides = {"encoder": encoder}
    with pytest.raises(ValueError, match=r"option space_overrides.encoder: \['(tu-)?(resnet19|no_such_encoder)'\] "
                                         r"are not encoders smp or timm know"):
        validate_space(get_space("default", overrides), overrides, fixed, grace_period=2)
