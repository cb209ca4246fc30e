"""Image sizes against the network: divisibility by 2**depth, and tiling plans for large images (pure)."""

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


def axis_tiles(length: int, tile: int, min_overlap: int) -> list[int]:
    """Start offsets of tiles of `tile` pixels covering `length`, neighbours overlapping >= min_overlap.

    n = ceil((length - min_overlap) / (tile - min_overlap)) tiles; their starts are spread evenly over
    0 .. length - tile, so the real overlap is at least min_overlap. A short axis gets one tile (padded).
    """
    if length <= tile:
        return [0]
    if not 0 <= min_overlap < tile:
        raise ValueError(f"overlap {min_overlap} must be in [0, tile {tile})")
    count = -(-(length - min_overlap) // (tile - min_overlap))
    return [i * (length - tile) // (count - 1) for i in range(count)]


def tiling_plan(size, tile, min_overlap: int) -> dict:
    """How an (H, W) image is cut into (h, w) tiles: tiles per axis, their starts and the real overlap."""
    starts = [axis_tiles(length, side, min(min_overlap, side - 1)) for length, side in zip(size, tile)]
    overlaps = [min((side - (b - a) for a, b in zip(s, s[1:])), default=0) for s, side in zip(starts, tile)]
    return {"size": list(size), "tile": list(tile), "tiles": [len(s) for s in starts],
            "tiles_per_image": len(starts[0]) * len(starts[1]), "starts": starts, "overlap": overlaps,
            "padded": [max(0, side - length) for length, side in zip(size, tile)]}


def tiling_plans(sizes, crop, min_overlap: int) -> list[dict]:
    """A plan for each distinct size larger than `crop` in either axis, with how many images have it."""
    plans = []
    for (height, width), count in Counter(tuple(s) for s in sizes).most_common():
        if height > crop[0] or width > crop[1]:
            plans.append({**tiling_plan((height, width), crop, min_overlap), "images": count})
    return plans
