"""Trial settings fixed by the dataset and the search config rather than sampled."""

from __future__ import annotations

from search.config import SearchConfig
from segtune.class_weights import pixel_counts
from segtune.data import SegmentationData, normalisation_stats

INTERNAL_IGNORE = 255
"""Padding label when a dataset labels every pixel: no class uses it, every loss skips it."""


def fixed_trial_params(cfg: SearchConfig, data: SegmentationData, splits: dict[str, list[str]]) -> dict:
    unknown = [c for c in cfg.exclude_from_mean if c not in data.classes]
    if unknown:
        raise ValueError(f"option exclude_from_mean: {unknown} not among the classes {list(data.classes)}")
    mean, std = normalisation_stats(data, splits["train"])
    index = data.index_of()
    counts = pixel_counts([data.masks[index[i]] for i in splits["train"]], data.num_classes)
    return {
        "in_channels": data.in_channels,
        "num_classes": data.num_classes,
        "class_names": list(data.classes),
        "ignore_index": INTERNAL_IGNORE if data.ignore_index is None else data.ignore_index,
        "exclude_from_mean": [data.classes.index(c) for c in cfg.exclude_from_mean],
        "class_pixel_counts": counts,
        "mean": mean,
        "std": std,
        "crop": list(cfg.crop),
        "max_epochs": cfg.max_epochs,
        "steps_per_epoch": cfg.steps_per_epoch,
        "encoder_weights": cfg.encoder_weights,
        "num_workers": cfg.loader_workers,
        "mixed_precision": cfg.mixed_precision,
        "channels_last": cfg.channels_last,
        "gpu_fraction": min(cfg.gpus_per_trial, 1.0) or 1.0,
        "seed": cfg.seed,
    }
