"""Class weights from the training split's pixel counts (pure numpy)."""

from __future__ import annotations

import numpy as np


def median_frequency_weights(pixel_counts, cap: float = 10.0) -> list[float]:
    """w_c = median(freq) / freq_c, capped at `cap`; classes with no pixels get weight 0.

    Uncapped weights of the crop/weed report reached ~1400 and made the model over-predict
    rare classes, hence the cap.
    """
    counts = np.asarray(pixel_counts, dtype=np.float64)
    present = counts > 0
    frequency = counts / counts.sum()
    weights = np.zeros_like(frequency)
    weights[present] = np.median(frequency[present]) / frequency[present]
    return np.minimum(weights, cap).round(6).tolist()


def pixel_counts(masks, num_classes: int) -> list[int]:
    total = np.zeros(num_classes, dtype=np.int64)
    for mask in masks:
        total += np.bincount(mask.reshape(-1), minlength=256)[:num_classes]
    return total.tolist()
