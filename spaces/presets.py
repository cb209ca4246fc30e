"""Presets from the two reports, and the recipes each one evaluates first.

- crop_weed: RGB field photos, background/crop/weed; ImageNet-family encoders under a 5-stage decoder,
  class-weighted losses, NAdam (the crop/weed report).
- terrain: 64x128 grayscale tiles, 5 classes with one rare; U-Net depth 3-5, cross-entropy warm-up
  then (focal) Tversky or Dice, AdamW, flips + CutMix, rare-class oversampling (the terrain report).
- generic: every architecture, encoder family, loss and augmentation.
"""

from __future__ import annotations

from segtune.names import LOSS_NAMES
from spaces.parts import (ARCHITECTURES, ENCODER_FAMILIES, LIGHT_ENCODERS, suggest_augmentation, suggest_imbalance,
                          suggest_loss, suggest_model, suggest_optimisation)

ALL_ENCODERS = tuple(e for family in ENCODER_FAMILIES.values() for e in family)
LOSS_WARMUP_EPOCHS = (0, 1, 2)
"""Epochs of cross-entropy before the searched loss, in the spaces that search a warm-up (terrain, generic)."""


def crop_weed_space(trial) -> dict:
    fixed = suggest_model(trial, ("Unet", "UnetPlusPlus", "FPN", "DeepLabV3Plus"),
                          ("resnet18", "densenet121", "efficientnet-b0", *LIGHT_ENCODERS), depths=(3, 5))
    suggest_loss(trial, ("cross_entropy", "weighted_cross_entropy", "per_image_weighted_cross_entropy", "focal",
                         "dice", "cross_entropy_dice", "lovasz"))
    suggest_imbalance(trial)
    suggest_optimisation(trial, lr=(3e-5, 3e-3), batch_sizes=(2, 4, 8), optimizers=("nadam", "adamw", "adam"))
    suggest_augmentation(trial, cutmix=False)
    return fixed


def terrain_space(trial) -> dict:
    fixed = suggest_model(trial, ("Unet", "UnetPlusPlus", "FPN", "Segformer"), LIGHT_ENCODERS + ("vgg11_bn",),
                          depths=(3, 5))
    suggest_loss(trial, ("cross_entropy", "weighted_cross_entropy", "focal", "dice", "tversky", "focal_tversky"),
                 warmup_epochs=LOSS_WARMUP_EPOCHS)
    suggest_imbalance(trial)
    suggest_optimisation(trial, lr=(1e-4, 1e-2), batch_sizes=(8, 16, 32), optimizers=("adamw", "adam", "nadam"))
    suggest_augmentation(trial, cutmix=True)
    return fixed


def generic_space(trial) -> dict:
    fixed = suggest_model(trial, ARCHITECTURES, ALL_ENCODERS, depths=(3, 5))
    suggest_loss(trial, LOSS_NAMES, warmup_epochs=LOSS_WARMUP_EPOCHS)
    suggest_imbalance(trial)
    suggest_optimisation(trial)
    suggest_augmentation(trial)
    return fixed


WARMUP_EPOCHS = {"terrain": LOSS_WARMUP_EPOCHS, "generic": LOSS_WARMUP_EPOCHS}
"""Each space's warm-up choices (none where absent), read by the search's default grace_period."""

RECIPES = {
    # The crop/weed report's final model: Unet, 5-stage decoder, ImageNet-family encoder, per-image class
    # weights (here capped), NAdam at 1e-4, reduce-on-plateau, early stopping, flips.
    "crop_weed": [{
        "architecture": "Unet", "encoder": "resnet18", "encoder_depth": 5, "decoder_interpolation": "nearest",
        "decoder_attention": False, "head_dropout": 0.0, "loss": "per_image_weighted_cross_entropy",
        "class_weight_cap": 25.0, "oversample_rare": 1.0, "copy_paste": 0.0, "optimizer": "nadam", "lr": 1e-4,
        "weight_decay": 1e-6, "scheduler": "plateau", "batch_size": 4, "grad_clip": None, "early_stop_patience": 5,
        "early_stop_min_delta": 0.0, "flip": True, "rotate90": False, "shift_scale_rotate": 0.0,
        "brightness_contrast": 0.0, "gamma": 0.0, "blur_noise": 0.0, "distortion": 0.0}],
    # The terrain report's final recipe: U-Net, cross-entropy warm-up at a higher lr, then focal Tversky
    # (alpha 0.7, beta 0.3), AdamW wd 1e-4, batch 16, flips + CutMix, rare-class oversampling, plateau.
    "terrain": [{
        "architecture": "Unet", "encoder": "tu-resnet18", "encoder_depth": 4, "decoder_interpolation": "nearest",
        "decoder_attention": False, "head_dropout": 0.0, "loss": "focal_tversky", "tversky_alpha": 0.7,
        "tversky_beta": 0.3, "focal_gamma": 0.75, "warmup_epochs": 2, "warmup_lr": 1e-3, "oversample_rare": 4.0,
        "copy_paste": 0.0, "optimizer": "adamw", "lr": 3e-4, "weight_decay": 1e-4, "scheduler": "plateau",
        "batch_size": 16, "grad_clip": None, "early_stop_patience": 5, "early_stop_min_delta": 0.0, "flip": True,
        "rotate90": False, "shift_scale_rotate": 0.0, "brightness_contrast": 0.0, "gamma": 0.0, "blur_noise": 0.0,
        "distortion": 0.0, "cutmix": 0.25}],
}

# segtune's one default model for any data: Unet, a light timm encoder, CE+Dice, AdamW at 1e-3, a cosine
# schedule after a 1-epoch warm-up, batch 8, flips. bench/compare_searchers.py trains it alone with a whole
# budget (its `default` row); `start_from_default: true` queues it as a search's first point, before the recipes.
DEFAULT_MODEL = {"architecture": "Unet", "encoder": "tu-resnet18", "encoder_depth": 4, "loss": "cross_entropy_dice",
                 "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "scheduler": "cosine",
                 "scheduler_warmup_epochs": 1, "batch_size": 8, "flip": True}
