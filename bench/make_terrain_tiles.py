"""Cut terrain-like data from CamVid: 64x128 grayscale tiles, 5 classes with a rare one, as one NPZ.

    python bench/make_terrain_tiles.py ../shared/datasets/camvid /tmp/camvid_tiles.npz [COUNT]

COUNT keeps a seeded random subset of that many tiles (the CPU benchmarks use 300), in image order.

Each image is read in grayscale at half size (192x144) and one 64x128 tile is cut at a seeded
random place. Classes: 0 background (sky, building, tree, fence, sign), 1 road, 2 pavement,
3 car, 4 rare (pole, pedestrian, bicyclist); CamVid's void stays 255 (ignored).
The NPZ holds `pairs` of shape (N, 2, 64, 128), the layout of the terrain report's data.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

# CamVid index: sky 0, building 1, pole 2, road 3, pavement 4, tree 5, sign 6, fence 7, car 8, pedestrian 9, bicyclist 10
TO_TERRAIN = np.full(256, 255, dtype=np.uint8)
TO_TERRAIN[[0, 1, 5, 6, 7]] = 0
TO_TERRAIN[3], TO_TERRAIN[4], TO_TERRAIN[8] = 1, 2, 3
TO_TERRAIN[[2, 9, 10]] = 4


def main(source: str, target: str, count: str | None = None, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    pairs = []
    for image_path in sorted((Path(source) / "images").iterdir()):
        mask_path = Path(source) / "masks" / f"{image_path.stem}.png"
        image = np.asarray(Image.open(image_path).convert("L").resize((192, 144), Image.BILINEAR))
        mask = TO_TERRAIN[np.asarray(Image.open(mask_path).resize((192, 144), Image.NEAREST))]
        top, left = int(rng.integers(0, 144 - 64 + 1)), int(rng.integers(0, 192 - 128 + 1))
        window = (slice(top, top + 64), slice(left, left + 128))
        pairs.append(np.stack([image[window], mask[window]]))
    stack = np.stack(pairs)
    if count is not None:
        stack = stack[np.sort(rng.choice(len(stack), size=min(int(count), len(stack)), replace=False))]
    np.savez_compressed(target, pairs=stack)
    labelled = stack[:, 1][stack[:, 1] != 255]
    share = np.bincount(labelled, minlength=5) / labelled.size
    print(f"{target}: {stack.shape}, class shares {np.round(share, 4).tolist()}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
