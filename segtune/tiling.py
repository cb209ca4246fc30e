"""How an image is cut into network-sized tiles: one rule for `segtune inspect`'s plan and `segtune predict`.

Tiles step by tile - overlap pixels and the last one sits flush with the far edge; an axis shorter than
a tile is padded to one tile. Both commands call tile_starts, so the plan inspect prints is the grid
predict cuts.

    tile_starts(1296, 256, 192)  # -> [0, 192, 384, 576, 768, 960, 1040]: overlap 64, the last tile flush
"""

from __future__ import annotations

from collections import Counter

import numpy as np

TILE_MULTIPLE = 32
"""Network inputs are padded to multiples of 32 a side (2**5: enough for every architecture at depth <= 5);
training crops and bundle tiles must be multiples of it."""
DEFAULT_OVERLAP = 0.25
"""Share of a tile that neighbouring tiles overlap (`segtune ensemble --overlap`, recorded in the bundle)."""


def network_tile(crop) -> list[int]:
    """The tile a bundle predicts on for a search's crop: each side rounded up to TILE_MULTIPLE."""
    return [-(-side // TILE_MULTIPLE) * TILE_MULTIPLE for side in crop]


def overlap_pixels(tile: int, overlap: float) -> int:
    """Pixels two neighbouring tiles share: `overlap` of the tile, rounded, at most tile - 1."""
    return min(round(tile * overlap), tile - 1)


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Starts of `tile`-pixel tiles every `stride` pixels along max(length, tile), the last flush with the end."""
    end = max(length, tile) - tile
    starts = list(range(0, end + 1, stride))
    return starts if starts[-1] == end else [*starts, end]


def tiling_plan(size, tile, overlap: float) -> dict:
    """How `segtune predict` cuts an (H, W) image into (h, w) tiles: tiles per axis, starts, real overlap, padding."""
    starts = [tile_starts(length, side, side - overlap_pixels(side, overlap)) for length, side in zip(size, tile)]
    overlaps = [min((side - (b - a) for a, b in zip(s, s[1:])), default=0) for s, side in zip(starts, tile)]
    return {"size": list(size), "tile": list(tile), "tiles": [len(s) for s in starts],
            "tiles_per_image": len(starts[0]) * len(starts[1]), "starts": starts, "overlap": overlaps,
            "padded": [max(0, side - length) for length, side in zip(size, tile)]}


def tiling_plans(sizes, tile, overlap: float) -> list[dict]:
    """A plan for each distinct size larger than `tile` in either axis, with how many images have it."""
    plans = []
    for (height, width), count in Counter(tuple(s) for s in sizes).most_common():
        if height > tile[0] or width > tile[1]:
            plans.append({**tiling_plan((height, width), tile, overlap), "images": count})
    return plans


def blend_window(size: int, ramp: int) -> np.ndarray:
    """Weights along one tile axis: 1 in the middle, falling linearly over `ramp` pixels to 0.5/ramp at both ends.

    Never 0, so a pixel that only an edge of a tile covers (the image border) keeps that tile's
    prediction; where two tiles overlap by `ramp` pixels the weights sum to 1, a linear cross-fade.
    `segtune predict` and tiled validation (trainables/tiled.py) blend tiles with it.
    """
    if ramp == 0:
        return np.ones(size, np.float32)
    centres = np.arange(size) + 0.5
    return np.minimum(1.0, np.minimum(centres, size - centres) / ramp).astype(np.float32)
