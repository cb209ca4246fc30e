"""Every parameter a space samples changes what a trial does: its losses, scores, lr or length."""

import optuna
import pytest

from search.config import load_config
from search.fixed import fixed_trial_params
from segtune import names
from segtune.data import make_splits, make_synthetic
from spaces import SPACES, field_name
from trainables import TrialConfig, run_trial

# Two 3-epoch trials per parameter (about 6 minutes), and every space sampled 200 times (which builds each
# model a space offers once): run by plain `pytest` and .ci/run, not by the fast tier.
pytestmark = pytest.mark.slow

# field -> (a value other than the baseline's, settings the field needs to matter)
ALTERNATIVES = {
    "architecture": ("UnetPlusPlus", {}),
    "encoder": ("tu-resnet18", {}),
    "encoder_depth": (4, {}),
    "decoder_interpolation": ("bilinear", {}),
    "decoder_attention": (True, {}),
    "head_dropout": (0.3, {}),
    "loss": ("dice", {}),
    "tversky_alpha": (0.3, {"loss": "tversky"}),
    "tversky_beta": (0.7, {"loss": "tversky"}),
    "focal_gamma": (0.5, {"loss": "focal"}),
    "dice_weight": (3.0, {"loss": "cross_entropy_dice"}),
    "class_weighting": ("inverse_frequency", {"loss": "weighted_cross_entropy"}),
    "class_weight_cap": (2.0, {"loss": "weighted_cross_entropy", "class_weighting": "inverse_frequency"}),
    "warmup_epochs": (1, {"loss": "dice"}),
    "warmup_lr": (1e-2, {"loss": "dice", "warmup_epochs": 1}),
    "oversample_rare": (4.0, {}),
    "copy_paste": (1.0, {}),
    "optimizer": ("sgd", {}),
    "lr": (1e-2, {}),
    "weight_decay": (0.5, {}),
    "scheduler": ("exponential", {}),
    "scheduler_warmup_epochs": (2, {"scheduler": "cosine"}),
    "grad_clip": (0.01, {}),
    "batch_size": (2, {}),
    "early_stop_patience": (1, {"early_stop_min_delta": 1.0}),
    "early_stop_min_delta": (1.0, {"early_stop_patience": 1}),
    "flip": (True, {}),
    "rotate90": (True, {}),
    "shift_scale_rotate": (1.0, {}),
    "brightness_contrast": (0.4, {}),
    "gamma": (0.4, {}),
    "blur_noise": (1.0, {}),
    "distortion": (1.0, {}),
    "cutmix": (1.0, {}),
    "scale": (0.5, {}),  # no preset samples it; space_overrides adds it to any space
}


@pytest.fixture(scope="module")
def setup():
    data = make_synthetic(count=12)
    splits = make_splits(data, 0.25, 0.0, seed=0)
    fixed = fixed_trial_params(load_config(None, {}), data, splits).as_dict()
    base = {**fixed, "max_epochs": 3, "steps_per_epoch": 2, "batch_size": 4, "lr": 3e-3}
    return data, splits, base


def fingerprint(values: dict, setup) -> list[tuple]:
    data, splits, _ = setup
    reports = []
    run_trial(TrialConfig.from_dict(values), data, splits, lambda result, state: reports.append(result))
    return [(r[names.TRAIN_LOSS], r[names.VAL_LOSS], r[names.VAL_MIOU], r[names.LR]) for r in reports]


def test_the_table_covers_every_parameter_any_space_samples():
    sampled = set()
    for space in SPACES.values():
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for _ in range(200):
            trial = study.ask()
            sampled |= {field_name(k) for k in {**trial.params, **(space(trial) or {})}}
            study.tell(trial, 0.0)
    assert sampled <= set(ALTERNATIVES), f"add a check for {sorted(sampled - set(ALTERNATIVES))}"


@pytest.mark.parametrize("field", sorted(ALTERNATIVES))
def test_changing_the_parameter_changes_the_trial(field, setup):
    value, needs = ALTERNATIVES[field]
    base = {**setup[2], **needs}
    assert base.get(field, getattr(TrialConfig, field)) != value
    assert fingerprint({**base, field: value}, setup) != fingerprint(base, setup)
