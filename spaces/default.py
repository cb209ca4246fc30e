"""The embedded default space and the smoke-test space: define-by-run functions of an optuna.Trial.

They only suggest; values that depend on the dataset (classes, channels, normalisation) are fixed
by search/ and merged into the TrialConfig by the trainable.
"""

from __future__ import annotations

import optuna


def default_space(trial: optuna.Trial) -> dict | None:
    """Small CPU-friendly models; the choices the reports tuned by hand."""
    architecture = trial.suggest_categorical("architecture", ["Unet", "FPN", "UnetPlusPlus"])
    trial.suggest_categorical("encoder", ["tu-mobilenetv3_small_050", "tu-resnet18"])
    # smp's FPN returns maps of the wrong size below depth 5, so its depth is fixed, not sampled.
    fixed = {"encoder_depth": 5} if architecture == "FPN" else None
    if fixed is None:
        trial.suggest_int("encoder_depth", 3, 4)
    trial.suggest_categorical("loss", ["cross_entropy", "weighted_cross_entropy", "cross_entropy_dice", "dice"])
    trial.suggest_categorical("optimizer", ["adamw", "nadam"])
    trial.suggest_float("lr", 3e-4, 3e-2, log=True)
    trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
    trial.suggest_categorical("batch_size", [4, 8])
    return fixed


def smoke_space(trial: optuna.Trial) -> None:
    """The smallest model and a narrow space: exercises the machinery in seconds."""
    trial.suggest_categorical("architecture", ["Unet"])
    trial.suggest_categorical("encoder", ["tu-mobilenetv3_small_050"])
    trial.suggest_categorical("loss", ["cross_entropy", "cross_entropy_dice"])
    trial.suggest_float("lr", 1e-3, 3e-2, log=True)
