"""Every space, sampled with a seeded sampler, builds models that train a step on the CPU."""

import optuna
import pytest
import torch

from search.config import load_config
from search.fixed import fixed_trial_params
from segtune.data import make_splits, make_synthetic
from spaces import RECIPES, SPACES, field_name
from trainables import TrialConfig
from trainables.device import Compute
from trainables.trainable import build_train_set, build_training, train_loader

SAMPLES = 4


@pytest.fixture(scope="module")
def fixed():
    data = make_synthetic(count=12)
    splits = make_splits(data, 0.2, 0.0, seed=0)
    params = fixed_trial_params(load_config(None, {"crop": [64, 96]}), data, splits).as_dict()  # non-square on purpose
    return data, splits, {**params, "steps_per_epoch": 1, "max_epochs": 4}


def sampled_configs(space, count, seed):
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=count))
    for _ in range(count):
        trial = study.ask()
        constants = space(trial) or {}
        yield {field_name(k): v for k, v in {**trial.params, **constants}.items()}
        study.tell(trial, 0.0)


def train_one_step(config: dict, fixed) -> float:
    data, splits, fixed_params = fixed
    cfg = TrialConfig.from_dict({**fixed_params, **config, "batch_size": 2})
    model, optimizer, losses = build_training(cfg, Compute(torch.device("cpu")))
    train_set, weights = build_train_set(cfg, data, splits["train"])
    images, masks = next(iter(train_loader(cfg, train_set, weights, epoch=1)))
    loss = losses["main"](model(images), masks)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss), config
    return loss.item()


@pytest.mark.slow  # builds and steps every model each space samples: about a minute
@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_sampled_configuration_builds_and_trains(name, fixed):
    for config in sampled_configs(SPACES[name], SAMPLES, seed=len(name)):
        train_one_step(config, fixed)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_is_a_valid_point_of_its_space(name, fixed):
    space = SPACES[name]
    for recipe in RECIPES[name]:
        study = optuna.create_study()
        study.enqueue_trial(recipe)
        trial = study.ask()
        constants = space(trial) or {}
        sampled = {field_name(k): v for k, v in {**trial.params, **constants}.items()}
        assert sampled == {field_name(k): v for k, v in recipe.items()}  # nothing left to chance, nothing unknown
        train_one_step(sampled, fixed)


@pytest.mark.parametrize("encoder, offered", [("tu-mobilenetv3_small_050", False), ("tu-resnet18", True)])
def test_decoder_attention_is_offered_only_where_smp_can_build_it(encoder, offered, fixed):
    """scSE squeezes channels by 16: under UnetPlusPlus the narrow stages of mobilenetv3_small_050 give a
    0-channel conv (found by a crop_weed search); such a trial must not be sampled, not fail at build."""
    study = optuna.create_study()
    study.enqueue_trial({"architecture": "UnetPlusPlus", "encoder": encoder, "encoder_depth": 4,
                         "decoder_attention": True})
    trial = study.ask()
    constants = SPACES["crop_weed"](trial) or {}
    assert ("decoder_attention" in trial.params) == offered
    train_one_step({field_name(k): v for k, v in {**trial.params, **constants}.items()}, fixed)
