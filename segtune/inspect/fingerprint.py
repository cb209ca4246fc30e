"""A dataset's fingerprint, and the distance between two: how `--warm-start auto` tells alike data from unlike.

    fingerprint = data_fingerprint(data)      # JSON-ready; `segtune inspect` prints it, every search saves it
    distance = fingerprint_distance(a, b)     # 0 for the same data, 1 for data alike in nothing

The fingerprint holds the class names and their shares of labelled pixels, the median image size (as read,
after any resize), the channels, and per channel the grey-level mean, standard deviation and a coarse
histogram. The distance is a weighted sum of four parts, each in [0, 1] (distance_parts).
"""

from __future__ import annotations

import math

import numpy as np

from segtune.data import SegmentationData

FINGERPRINT_VERSION = 1
HISTOGRAM_BINS = 16
"""Bins of each channel's grey-level histogram (16 grey levels each)."""
WEIGHTS = {"classes": 0.4, "channels": 0.2, "size": 0.1, "intensity": 0.3}
"""Each part's weight in the distance; they sum to 1. What is segmented (classes) counts most, image size least:
the same scenes read at another size are alike data."""


def data_fingerprint(data: SegmentationData) -> dict:
    """The fingerprint of `data` as read (every image, after resize and exclusions)."""
    channels = data.in_channels
    counts = np.zeros(data.num_classes, dtype=np.int64)
    levels = np.zeros((channels, 256), dtype=np.int64)
    for image, mask in zip(data.images, data.masks):
        counts += np.bincount(mask.reshape(-1), minlength=256)[:data.num_classes]
        for channel in range(channels):
            levels[channel] += np.bincount(image[..., channel].reshape(-1), minlength=256)
    shares = levels / np.maximum(levels.sum(1, keepdims=True), 1)
    grey = np.arange(256, dtype=np.float64)
    mean = shares @ grey
    std = np.sqrt(np.maximum(shares @ grey ** 2 - mean ** 2, 0.0))
    sizes = np.array([image.shape[:2] for image in data.images])
    return {"version": FINGERPRINT_VERSION, "images": len(data.images), "classes": list(data.classes),
            "class_shares": _rounded(counts / max(counts.sum(), 1)),
            "size": [int(np.median(sizes[:, 0])), int(np.median(sizes[:, 1]))], "channels": channels,
            "channel_mean": _rounded(mean, 2), "channel_std": _rounded(std, 2),
            "histogram": [_rounded(row.reshape(HISTOGRAM_BINS, -1).sum(1)) for row in shares]}


def _rounded(values, digits: int = 6) -> list[float]:
    return [round(float(v), digits) for v in values]


def distance_parts(a: dict, b: dict) -> dict[str, float]:
    """Each part of the distance between fingerprints a and b, in [0, 1]:

    classes    total variation between the class shares, classes matched by name (a class only one side has
               counts as share 0 on the other, so data sharing no class name is 1 apart)
    channels   0 for the same number of channels, else 1
    size       |log2| of the ratio of median heights plus that of widths, over 4 (half the size both ways: 0.5)
    intensity  total variation between the grey-level histograms, averaged over channels (of the channel-averaged
               histograms when the channel counts differ)
    """
    names = list(dict.fromkeys([*a["classes"], *b["classes"]]))
    share_a, share_b = (dict(zip(f["classes"], f["class_shares"])) for f in (a, b))
    classes = 0.5 * sum(abs(share_a.get(n, 0.0) - share_b.get(n, 0.0)) for n in names)
    size = sum(abs(math.log2(x / y)) for x, y in zip(a["size"], b["size"])) / 4
    histogram_a, histogram_b = np.asarray(a["histogram"], float), np.asarray(b["histogram"], float)
    if histogram_a.shape != histogram_b.shape:
        histogram_a, histogram_b = histogram_a.mean(0, keepdims=True), histogram_b.mean(0, keepdims=True)
    intensity = 0.5 * float(np.abs(histogram_a - histogram_b).sum(1).mean())
    return {"classes": min(1.0, classes), "channels": float(a["channels"] != b["channels"]), "size": min(1.0, size),
            "intensity": min(1.0, intensity)}


def fingerprint_distance(a: dict, b: dict) -> float:
    """The weighted sum of distance_parts (WEIGHTS): 0 for equal fingerprints, 1 for data alike in nothing."""
    parts = distance_parts(a, b)
    return sum(WEIGHTS[part] * value for part, value in parts.items())


def describe_distance(a: dict, b: dict) -> str:
    """'0.081 (classes 0.020, channels 0, size 0.500, intensity 0.064)': the distance and its parts."""
    parts = distance_parts(a, b)
    shown = ", ".join(f"{part} {value:.3f}" if value else f"{part} 0" for part, value in parts.items())
    return f"{fingerprint_distance(a, b):.3f} ({shown})"


def format_fingerprint(fingerprint: dict) -> str:
    """The fingerprint's lines in `segtune inspect`'s report."""
    shares = ", ".join(f"{name} {100 * share:.2f}%" for name, share in zip(fingerprint["classes"],
                                                                          fingerprint["class_shares"]))
    channels = "; ".join(f"channel {c}: mean {m:.1f}, std {s:.1f}" for c, (m, s) in
                         enumerate(zip(fingerprint["channel_mean"], fingerprint["channel_std"])))
    return "\n".join([
        "Fingerprint (every search saves it as segtune/fingerprint.json; --warm-start auto compares them)",
        f"  {fingerprint['images']} images, median size {fingerprint['size'][0]} x {fingerprint['size'][1]}, "
        f"{fingerprint['channels']} channel(s)",
        f"  class shares: {shares}",
        f"  grey levels: {channels}"])
