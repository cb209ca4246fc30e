"""Building blocks of the presets: each suggests one group of TrialConfig fields on an optuna.Trial.

Conditional parameters are suggested only where they apply. A field sampled from a different set of
choices in another branch gets an alias, `field@branch`, so Optuna sees one fixed distribution per
name; the trainable maps `encoder@dilatable` back to `encoder`.
"""

from __future__ import annotations

from segtune.names import ARCHITECTURES
from trainables.model import attention_builds, is_valid_combination

ENCODER_FAMILIES = {
    "resnet": ("resnet18", "resnet34", "tu-resnet18"),
    "densenet": ("densenet121",),
    "efficientnet": ("efficientnet-b0", "tu-efficientnet_b0"),
    "mobilenet": ("mobilenet_v2", "tu-mobilenetv3_small_050"),
    "vgg": ("vgg11_bn",),
}
LIGHT_ENCODERS = ("tu-mobilenetv3_small_050", "tu-resnet18", "tu-efficientnet_b0")
"""timm encoders that build offline and train quickly on a CPU."""


def suggest_model(trial, architectures=ARCHITECTURES, encoders=LIGHT_ENCODERS, depths=(3, 5)) -> dict:
    """Architecture, encoder, depth and decoder options; returns the constants the branch fixes."""
    architecture = trial.suggest_categorical("architecture", list(architectures))
    fixed = {}
    if architecture == "DeepLabV3Plus":  # cannot dilate DenseNet or VGG encoders
        dilatable = [e for e in encoders if is_valid_combination("DeepLabV3Plus", e, 5)]
        trial.suggest_categorical("encoder@dilatable", dilatable)
    else:
        encoder = trial.suggest_categorical("encoder", list(encoders))
    if architecture == "FPN":  # returns maps of the wrong size below depth 5
        fixed["encoder_depth"] = 5
    else:
        depth = trial.suggest_int("encoder_depth", depths[0], depths[1])
    if architecture in ("Unet", "UnetPlusPlus", "FPN"):
        trial.suggest_categorical("decoder_interpolation", ["nearest", "bilinear"])
    if architecture in ("Unet", "UnetPlusPlus") and attention_builds(architecture, encoder, depth):
        trial.suggest_categorical("decoder_attention", [False, True])
    trial.suggest_float("head_dropout", 0.0, 0.3)
    return fixed


def suggest_loss(trial, losses, warmup_epochs=(0,)) -> None:
    """Loss and its own parameters; optional cross-entropy warm-up before the switch."""
    loss = trial.suggest_categorical("loss", list(losses))
    if loss in ("tversky", "focal_tversky"):
        trial.suggest_float("tversky_alpha", 0.3, 0.9)
        trial.suggest_float("tversky_beta", 0.1, 0.7)
    if loss in ("focal", "focal_tversky"):
        trial.suggest_float("focal_gamma", 0.5, 3.0)
    if loss == "cross_entropy_dice":
        trial.suggest_float("dice_weight", 0.25, 2.0, log=True)
    if loss in ("weighted_cross_entropy", "focal"):
        trial.suggest_categorical("class_weighting", ["inverse_frequency", "log_inverse_frequency",
                                                      "median_frequency", "effective_number"])
    if loss in ("weighted_cross_entropy", "per_image_weighted_cross_entropy", "focal"):
        trial.suggest_float("class_weight_cap", 2.0, 50.0, log=True)
    if len(warmup_epochs) > 1 and loss != "cross_entropy":
        if trial.suggest_categorical("warmup_epochs", list(warmup_epochs)):
            trial.suggest_float("warmup_lr", 3e-4, 3e-3, log=True)


def suggest_imbalance(trial) -> None:
    trial.suggest_categorical("oversample_rare", [1.0, 2.0, 4.0])
    trial.suggest_categorical("copy_paste", [0.0, 0.25, 0.5])


def suggest_optimisation(trial, lr=(1e-4, 1e-2), batch_sizes=(4, 8, 16), optimizers=("adam", "adamw", "nadam", "sgd")):
    trial.suggest_categorical("optimizer", list(optimizers))
    trial.suggest_float("lr", lr[0], lr[1], log=True)
    trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
    if trial.suggest_categorical("scheduler", ["none", "plateau", "exponential", "cosine"]) == "cosine":
        trial.suggest_int("scheduler_warmup_epochs", 0, 2)
    trial.suggest_categorical("batch_size", list(batch_sizes))
    trial.suggest_categorical("grad_clip", [None, 1.0, 5.0])
    if trial.suggest_categorical("early_stop_patience", [None, 3, 5]) is not None:
        trial.suggest_float("early_stop_min_delta", 0.0, 0.01)


def suggest_augmentation(trial, cutmix: bool = True) -> None:
    """Each augmentation off (0) or on at a searched strength or probability."""
    trial.suggest_categorical("flip", [False, True])
    trial.suggest_categorical("rotate90", [False, True])
    trial.suggest_categorical("shift_scale_rotate", [0.0, 0.25, 0.5, 1.0])
    trial.suggest_categorical("brightness_contrast", [0.0, 0.1, 0.2, 0.4])
    trial.suggest_categorical("gamma", [0.0, 0.1, 0.2, 0.4])
    trial.suggest_categorical("blur_noise", [0.0, 0.2, 0.5])
    trial.suggest_categorical("distortion", [0.0, 0.2, 0.5])
    if cutmix:
        trial.suggest_categorical("cutmix", [0.0, 0.25, 0.5])
