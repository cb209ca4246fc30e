"""One rule for resizing images and masks, used when data is read (`resize`) and when a trial scales them (`scale`).

Images bilinear (PIL, which filters when shrinking), masks nearest, so a mask keeps its class indices and
its ignore value. A scaled size rounds half up, never below one pixel.

    scaled_size((242, 324), 0.5)   # -> (121, 162)
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def scaled_size(size, scale: float) -> tuple[int, int]:
    """(H, W) of an image of `size` resized by `scale`: each side rounded half up, at least 1."""
    return tuple(max(1, int(side * scale + 0.5)) for side in size)


def resize_image(image: np.ndarray, size) -> np.ndarray:
    """(H, W, C) uint8 image resized to `size` (H, W), bilinear; C kept (1 or 3)."""
    if image.shape[:2] == tuple(size):
        return image
    height, width = size
    pil = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
    resized = np.asarray(pil.resize((width, height), Image.BILINEAR))
    return resized[:, :, None] if resized.ndim == 2 else resized


def resize_mask(mask: np.ndarray, size) -> np.ndarray:
    """(H, W) uint8 class-index mask resized to `size` (H, W), nearest."""
    if mask.shape == tuple(size):
        return mask
    height, width = size
    return np.asarray(Image.fromarray(mask).resize((width, height), Image.NEAREST))
