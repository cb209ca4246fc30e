"""Class weights from the training split's pixel counts (pure numpy).

Every scheme but median frequency is scaled to mean 1 over the classes present, then capped:
uncapped weights of the crop/weed report reached ~1400 and made the model over-predict rare classes.
Classes with no pixels get weight 0.

    class_weights([900, 90, 10], "median_frequency", cap=10.0)  # -> [0.1, 1.0, 9.0]
"""

from __future__ import annotations

import numpy as np

WEIGHTING_SCHEMES = ("none", "inverse_frequency", "log_inverse_frequency", "median_frequency", "effective_number")
CLASS_WEIGHT_CAP = 10.0
"""Default largest class weight (a trial's class_weight_cap, the per-image weighted loss's cap, inspect's table)."""


def class_weights(pixel_counts, scheme: str, cap: float = CLASS_WEIGHT_CAP, beta: float = 0.9999) -> list[float]:
    """Weights for `scheme`; a KeyError lists the valid schemes."""
    counts = np.asarray(pixel_counts, dtype=np.float64)
    present = counts > 0
    frequency = counts / max(counts.sum(), 1.0)
    raw = np.zeros_like(counts)
    if scheme == "none":
        raw[:] = 1.0
    elif scheme == "inverse_frequency":
        raw[present] = 1.0 / frequency[present]
    elif scheme == "log_inverse_frequency":  # ENet: 1 / ln(1.02 + f), bounded even for tiny f
        raw[present] = 1.0 / np.log(1.02 + frequency[present])
    elif scheme == "median_frequency":  # already relative to the median class
        raw[present] = np.median(frequency[present]) / frequency[present]
        return np.minimum(raw, cap).round(6).tolist()
    elif scheme == "effective_number":  # Cui et al. 2019: (1 - beta) / (1 - beta ** n_c)
        raw[present] = (1.0 - beta) / (1.0 - np.power(beta, counts[present]))
    else:
        raise KeyError(f"unknown class weighting {scheme!r}; valid: {', '.join(WEIGHTING_SCHEMES)}")
    raw[present] /= raw[present].mean()
    return np.minimum(raw, cap).round(6).tolist()


def median_frequency_weights(pixel_counts, cap: float = CLASS_WEIGHT_CAP) -> list[float]:
    return class_weights(pixel_counts, "median_frequency", cap)


def pixel_counts(masks, num_classes: int) -> list[int]:
    total = np.zeros(num_classes, dtype=np.int64)
    for mask in masks:
        total += np.bincount(mask.reshape(-1), minlength=256)[:num_classes]
    return total.tolist()
