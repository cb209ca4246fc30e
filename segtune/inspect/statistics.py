"""Per-image facts gathered in one pass (pixel counts, grey-level mean/std, hashes), and the pure
summaries built from them: class shares, the images each class appears in, rare classes, outliers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segtune.data import SegmentationData
from segtune.inspect.hashing import fingerprint, mask_digest

RARE_SHARE = 0.01
"""A class below this share of labelled pixels is flagged rare."""
RARE_IMAGES = 3
"""A class in fewer images than this cannot be put in every split (make_splits' own threshold)."""


@dataclass(frozen=True)
class ImageTable:
    """One row per image, from a single pass over the decoded data."""
    names: list[str]
    sizes: list[tuple[int, int]]
    """(H, W) of each image."""
    channels: list[int]
    class_counts: np.ndarray
    """(N, K) labelled pixels per image and class."""
    unlabelled: np.ndarray
    """(N,) pixels holding the ignore index (or any value that is no class)."""
    mean: np.ndarray
    """(N,) grey-level mean over all pixels and channels, 0-255."""
    std: np.ndarray
    """(N,) grey-level standard deviation over all pixels and channels."""
    image_hashes: list[int]
    """256-bit DCT perceptual hash of each image."""
    thumbnails: np.ndarray
    """(N, 32, 32) float32 grey thumbnails, which confirm or refute hash matches."""
    mask_digests: list[str]
    """Exact digest of each mask's bytes."""


def measure_images(data: SegmentationData) -> ImageTable:
    """Count, histogram and hash every image and mask once."""
    k = data.num_classes
    counts = np.zeros((len(data.names), k), dtype=np.int64)
    unlabelled = np.zeros(len(data.names), dtype=np.int64)
    mean, std = np.zeros(len(data.names)), np.zeros(len(data.names))
    levels = np.arange(256, dtype=np.float64)
    hashes, thumbnails, digests = [], [], []
    for row, (image, mask) in enumerate(zip(data.images, data.masks)):
        per_value = np.bincount(mask.reshape(-1), minlength=256)
        counts[row], unlabelled[row] = per_value[:k], per_value[k:].sum()
        histogram = np.bincount(image.reshape(-1), minlength=256) / image.size  # mean/std without a float copy
        mean[row] = histogram @ levels
        std[row] = np.sqrt(max(histogram @ levels ** 2 - mean[row] ** 2, 0.0))
        image_hash, thumbnail = fingerprint(image)
        hashes.append(image_hash)
        thumbnails.append(thumbnail)
        digests.append(mask_digest(mask))
    return ImageTable(list(data.names), [im.shape[:2] for im in data.images], [im.shape[2] for im in data.images],
                      counts, unlabelled, mean, std, hashes, np.stack(thumbnails), digests)


def class_shares(counts) -> list[float]:
    """Share of labelled pixels per class; all zeros when nothing is labelled."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    return (counts / total if total else counts * 0).tolist()


def images_per_class(table: ImageTable) -> list[list[str]]:
    """For each class, the ids of the images holding at least one of its pixels."""
    holders = table.class_counts > 0
    return [[table.names[i] for i in np.nonzero(holders[:, c])[0]] for c in range(holders.shape[1])]


def rare_classes(shares, image_counts, share_below: float = RARE_SHARE, images_below: int = RARE_IMAGES) -> list[int]:
    """Classes under `share_below` of labelled pixels or present in fewer than `images_below` images, rarest first."""
    rare = [c for c, (s, n) in enumerate(zip(shares, image_counts)) if s < share_below or n < images_below]
    return sorted(rare, key=lambda c: (shares[c], c))


def robust_z(values) -> np.ndarray:
    """Modified z-score 0.6745 (x - median) / MAD (Iglewicz & Hoaglin).

    When more than half the values are equal (MAD 0) the mean absolute deviation stands in,
    scaled by 1.2533 to match a normal's spread; when every value is equal, all scores are 0.
    """
    values = np.asarray(values, dtype=np.float64)
    deviation = values - np.median(values)
    mad = np.median(np.abs(deviation))
    if mad > 0:
        return 0.6745 * deviation / mad
    mean_ad = np.mean(np.abs(deviation))
    return deviation / (1.2533 * mean_ad) if mean_ad > 0 else np.zeros_like(values)


def class_mix_distance(class_counts) -> np.ndarray:
    """(N,) total-variation distance, 0..1, between each image's class shares and the whole dataset's.

    One number per image rather than one per class: a rare class would make every image that holds
    it stand out, and those are the images class weighting is for, not outliers.
    """
    counts = np.asarray(class_counts, dtype=np.float64)
    overall = counts.sum(0) / max(counts.sum(), 1.0)
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1.0)
    return 0.5 * np.abs(shares - overall).sum(1)


def find_outliers(table: ImageTable, z_threshold: float) -> list[dict]:
    """Images whose grey-level mean or std, or whose class mix, lies beyond `z_threshold` robust z."""
    features = {"mean": table.mean, "std": table.std, "class mix": class_mix_distance(table.class_counts)}
    scores = {name: robust_z(values) for name, values in features.items()}
    found = []
    for row, name in enumerate(table.names):
        reasons = [{"feature": feature, "value": round(float(features[feature][row]), 4), "z": round(float(z[row]), 2)}
                   for feature, z in scores.items() if abs(z[row]) > z_threshold]
        if reasons:
            found.append({"id": name, "reasons": reasons})
    return found
