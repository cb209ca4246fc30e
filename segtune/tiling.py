"""How images are cut into network-sized tiles: one rule for `segtune inspect`'s plan and `segtune predict`.

    tile_starts(1296, 256, 64)  # -> [0, 192, 384, 576, 768, 960, 1040]: stride 192, the last flush with the edge
"""

from __future__ import annotations

TILE_MULTIPLE = 32
"""Network inputs are padded to multiples of 32 a side (2**5: enough for every architecture at depth <= 5);
training crops and bundle tiles must be multiples of it."""
