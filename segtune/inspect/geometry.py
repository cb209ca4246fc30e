"""Image sizes against the network: divisibility by 2**depth (pure). Tiling plans: segtune/tiling.py."""

from __future__ import annotations

from collections import Counter


def depth_fit(sizes, depth: int) -> list[dict]:
    """For each distinct (H, W), most common first: does it divide by 2**depth, and if not, how to fix it.

    An encoder of depth d halves the image d times, so H and W must be multiples of 2**d: pad up to
    the next multiple (what segtune's validation does) or crop down to the one below.
    """
    step = 2 ** depth
    fits = []
    for (height, width), count in Counter(tuple(s) for s in sizes).most_common():
        padded = (-(-height // step) * step, -(-width // step) * step)
        fits.append({"size": [height, width], "images": count, "fits": padded == (height, width),
                     "pad_to": list(padded), "pad": [padded[0] - height, padded[1] - width],
                     "crop_to": [height // step * step, width // step * step]})
    return fits

