"""Train one trial: TrialConfig, model factory, losses, the epoch loop and the Ray trainable.

Names are imported on first use, so that importing the package alone does not load torch, smp and Ray.
"""

import importlib

_HOMES = {"TrialConfig": "trainables.config", "LOSS_NAMES": "segtune.names", "build_loss": "trainables.losses",
          "build_model": "trainables.model", "predict_logits": "trainables.model", "load_model": "trainables.trainable",
          "run_trial": "trainables.trainable", "train_segmentation": "trainables.trainable",
          "read_val_probabilities": "trainables.val_probabilities", "reference_logits": "trainables.scale"}

__all__ = ["LOSS_NAMES", "TrialConfig", "build_loss", "build_model", "load_model", "predict_logits",
           "read_val_probabilities", "reference_logits", "run_trial", "train_segmentation"]


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'trainables' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
