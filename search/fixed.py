"""Trial settings fixed by the dataset and the search config rather than sampled."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from search.config import SearchConfig
from segtune.class_weights import pixel_counts
from segtune.data import SegmentationData, normalisation_stats
from segtune.weights import cache_location, describe_missing, ensure_cached, is_weights_name, missing_weights
from spaces.overrides import pretrained_encoders

INTERNAL_IGNORE = 255
"""Padding label when a dataset labels every pixel: no class uses it, every loss skips it."""


@dataclass(frozen=True)
class FixedTrialParams:
    """The TrialConfig fields every trial of a search shares; each name is the TrialConfig field it sets."""
    in_channels: int
    """Image channels: 1 (grayscale) or 3 (RGB)."""
    num_classes: int
    """Classes in the masks."""
    class_names: list[str]
    """Class names in index order."""
    ignore_index: int
    """Mask value no loss or metric counts (INTERNAL_IGNORE when the dataset labels every pixel)."""
    exclude_from_mean: list[int]
    """Class indices left out of the mIoU mean (the config's exclude_from_mean, by name there)."""
    class_pixel_counts: list[int]
    """Pixels of each class over the training split, for class weights."""
    mean: list[float]
    """Per-channel mean of the training images (0..1), for normalisation."""
    std: list[float]
    """Per-channel standard deviation of the training images (0..1)."""
    crop: list[int]
    """Training crop [H, W]."""
    progressive_epochs: int
    """Epochs trained at a reduced scale first (grace_period with progressive_resolution, else 0)."""
    progressive_scale: float
    """Factor on a trial's scale and crop in those epochs."""
    max_epochs: int
    """Epochs a trial may run (ASHA's max_t)."""
    steps_per_epoch: int | None
    """Batches per epoch; None for one pass over the training split."""
    encoder_weights: str | None
    """A weights name (read from weights_cache), a local encoder state-dict file, or None to train from scratch."""
    weights_cache: str | None
    """Where trials read weights fetched by name (segtune/weights.py); None unless encoder_weights is a name."""
    num_workers: int
    """DataLoader workers per trial."""
    mixed_precision: bool
    """bf16/fp16 autocast on a GPU."""
    channels_last: bool
    """Channels-last memory format on a GPU."""
    gpu_fraction: float
    """Share of a GPU each trial may use (1.0 on a CPU)."""
    seed: int
    """Seed of every trial."""
    keep_val_probabilities: bool
    """Keep the best epoch's class probabilities on the validation images beside its checkpoint."""

    def as_dict(self) -> dict:
        """Field -> value: what the trainable, the space check and MLflow merge under a trial's sampled parameters."""
        return dataclasses.asdict(self)


def fixed_trial_params(cfg: SearchConfig, data: SegmentationData, splits: dict[str, list[str]]) -> FixedTrialParams:
    unknown = [c for c in cfg.exclude_from_mean if c not in data.classes]
    if unknown:
        raise ValueError(f"option exclude_from_mean: {unknown} not among the classes {list(data.classes)}")
    mean, std = normalisation_stats(data, splits["train"])
    index = data.index_of()
    counts = pixel_counts([data.masks[index[i]] for i in splits["train"]], data.num_classes)
    return FixedTrialParams(
        in_channels=data.in_channels,
        num_classes=data.num_classes,
        class_names=list(data.classes),
        ignore_index=INTERNAL_IGNORE if data.ignore_index is None else data.ignore_index,
        exclude_from_mean=[data.classes.index(c) for c in cfg.exclude_from_mean],
        class_pixel_counts=counts,
        mean=mean,
        std=std,
        crop=list(cfg.crop),
        progressive_epochs=cfg.grace_period if cfg.progressive_resolution else 0,
        progressive_scale=cfg.progressive_scale,
        max_epochs=cfg.max_epochs,
        steps_per_epoch=cfg.steps_per_epoch,
        encoder_weights=cfg.encoder_weights,
        weights_cache=(cache_location(cfg.weights_cache, cfg.storage_path)
                       if cfg.encoder_weights and is_weights_name(cfg.encoder_weights) else None),
        num_workers=cfg.loader_workers,
        mixed_precision=cfg.mixed_precision,
        channels_last=cfg.channels_last,
        gpu_fraction=min(cfg.gpus_per_trial, 1.0) or 1.0,
        seed=cfg.seed,
        keep_val_probabilities=cfg.keep_val_probabilities,
    )


def cache_pretrained_weights(cfg: SearchConfig, space, fixed: dict) -> None:
    """Before Ray starts a trial: the named encoder_weights of every encoder the space may start pretrained are in
    the weights cache, fetched here once for the whole search; else refused, naming the encoders, the command that
    fills the cache on a connected machine and the option that points the search at it."""
    if fixed["weights_cache"] is None:
        return
    encoders = pretrained_encoders(space, cfg.space_overrides)
    missing = missing_weights(encoders, cfg.encoder_weights)
    if missing:
        raise ValueError(f"option encoder_weights: {describe_missing(missing, cfg.encoder_weights)}; choose weights "
                         "every encoder has, drop those encoders from space_overrides.encoder, or search "
                         "space_overrides.pretrained: [true, false] (encoders without weights then train from scratch)")
    ensure_cached(encoders, cfg.encoder_weights, fixed["weights_cache"])
