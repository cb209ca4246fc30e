"""Train one trial: TrialConfig, model factory, losses, the epoch loop and the Ray trainable."""

from trainables.config import TrialConfig
from trainables.losses import LOSS_NAMES, build_loss
from trainables.model import build_model, predict_logits
from trainables.trainable import load_model, run_trial, train_segmentation

__all__ = ["LOSS_NAMES", "TrialConfig", "build_loss", "build_model", "load_model", "predict_logits", "run_trial",
           "train_segmentation"]
