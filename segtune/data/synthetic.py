"""The embedded default dataset: deterministic, small, shaped like the users' problems.

Four classes on a textured background: large blobs ('plant'), thin curved lines ('stem',
like membranes or weed stems), and small spots ('rare') that cover well under 1 % of pixels
and appear in only some images, as the terrain report's rare class did.
"""

from __future__ import annotations

import numpy as np

from segtune.data.segmentation_data import SegmentationData

CLASSES = ("background", "plant", "stem", "rare")
PALETTE = ((0, 0, 0), (60, 180, 75), (255, 255, 255), (216, 67, 82))
_COLOURS = np.array([[90, 70, 50], [70, 150, 60], [200, 200, 170], [190, 60, 70]], dtype=np.float32)


def make_synthetic(count: int = 48, height: int = 64, width: int = 64, seed: int = 0) -> SegmentationData:
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for index in range(count):
        mask = np.zeros((height, width), dtype=np.uint8)
        yy, xx = np.mgrid[0:height, 0:width]
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            ry, rx = rng.uniform(5, 14, size=2)
            mask[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1] = 1
        for _ in range(rng.integers(1, 3)):
            phase, amplitude, row = rng.uniform(0, 6.3), rng.uniform(3, 10), rng.uniform(10, height - 10)
            curve = row + amplitude * np.sin(xx / rng.uniform(6, 14) + phase)
            mask[np.abs(yy - curve) < 0.9] = 2
        if index % 3 == 0:
            cy, cx = rng.integers(4, height - 4), rng.integers(4, width - 4)
            mask[((yy - cy) ** 2 + (xx - cx) ** 2) < rng.uniform(2, 6)] = 3
        image = _COLOURS[mask] + rng.normal(0, 28, size=(height, width, 3))
        image += 20 * np.sin(xx / 7.0 + index)[..., None]
        images.append(np.clip(image, 0, 255).astype(np.uint8))
        masks.append(mask)
    names = [f"synthetic_{i:03d}" for i in range(count)]
    return SegmentationData(images, masks, names, CLASSES, None, PALETTE, {}, "synthetic")
