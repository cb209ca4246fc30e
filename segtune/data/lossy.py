"""Masks that went through lossy (JPEG) compression: their labels are smeared, so say so instead of training.

Measured on the clean masks of ../shared/datasets (cwfid, camvid, isbi2012_membrane) and on JPEG copies
(quality 50-98) of them:
- index masks: JPEG turns a step between classes a and b into a ramp of values between them. A pixel
  strictly between its left and right (or upper and lower) neighbours is a ramp pixel: at most 1.9% of
  the boundary pixels of a clean mask (camvid's thin poles), at least 11% of a JPEG copy's (camvid, q98).
  JPEG also leaves many rare out-of-range values (ringing beside the ignore value 255).
- colour masks: JPEG leaves thousands of colours, and most of its off-map pixels (at least 73%) lie
  within 16 levels of a colour_map colour; a colour someone forgot to map is one exact colour.
Binary 0/1 masks at low quality can come back with only 0 and 1 (blocky edges): that is not detected.
"""

from __future__ import annotations

import numpy as np

LOSSLESS_ADVICE = "export masks losslessly as PNG from the original labels"
_RAMP_SHARE = 0.05
"""Ramp pixels per boundary pixel above which an index mask looks JPEG-compressed."""
NEAR_LEVELS = 16
"""Colour distance (largest channel difference) within which an off-map colour is compression noise."""


def index_mask_lossiness(mask: np.ndarray, valid: set[int]) -> str | None:
    """Why the index `mask` looks JPEG-compressed (valid: its class indices and ignore value), or None."""
    values = mask.astype(np.int32)
    ramps = _ramps(values) + _ramps(values.T)
    boundary = int(((values[:, 1:] != values[:, :-1]).sum() + (values[1:] != values[:-1]).sum()))
    found, counts = np.unique(values, return_counts=True)
    rare_invalid = [int(v) for v, n in zip(found, counts) if int(v) not in valid and n < 0.01 * values.size]
    if (ramps >= 20 and ramps > _RAMP_SHARE * boundary) or len(rare_invalid) >= 3:
        shown = ", ".join(str(v) for v in rare_invalid[:5]) or "in-between class values"
        return (f"looks JPEG-compressed: {ramps} pixels step between neighbouring classes' values and rare values "
                f"({shown}) rim the edges; {LOSSLESS_ADVICE}")
    return None


def colour_mask_lossiness(unknown: np.ndarray, counts: np.ndarray, mapped: np.ndarray,
                          unknown_as: str = "colours not in colour_map", mapped_as: str = "colour_map entries") -> str | None:
    """Why off-map colours look like JPEG noise (unknown (N, 3) colours with pixel counts; mapped (M, 3)), or None.

    segtune inspect, with no colour_map, passes a mask's few main colours as `mapped` (and says so in the *_as words).
    """
    if len(unknown) < 8:
        return None
    distance = np.abs(unknown[:, None, :].astype(np.int32) - mapped[None].astype(np.int32)).max(2).min(1)
    near = counts[distance <= NEAR_LEVELS].sum() / counts.sum()
    if near < 0.5:
        return None
    return (f"looks JPEG-compressed ({len(unknown)} {unknown_as}, {near:.0%} of those pixels within "
            f"{NEAR_LEVELS} levels of {mapped_as}); {LOSSLESS_ADVICE}")


def _ramps(values: np.ndarray) -> int:
    left, middle, right = values[:, :-2], values[:, 1:-1], values[:, 2:]
    return int((((left < middle) & (middle < right)) | ((left > middle) & (middle > right))).sum())
