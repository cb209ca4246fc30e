"""One image decoder for training and `segtune predict`: a file gives the same pixels in both.

    image = decode_image("photo.jpg")      # (H, W, C) uint8, C = 1 or 3; ValueError says why not

One rule per PIL mode; the mode alone decides the channels, never an image's own content or range:

    PIL mode                   read as
    1, L                       1 channel (mode 1: 0 or 255)
    LA, La                     1 channel, the alpha dropped
    RGB                        3 channels
    RGBA, RGBa, RGBX           3 channels, the alpha dropped (not blended with any background)
    P, PA with a grey palette  1 channel through the palette (every palette entry has R = G = B)
    P, PA                      3 channels through the palette (pixel values are palette indices)
    CMYK, YCbCr, LAB, HSV      3 channels, converted to RGB by PIL
    I;16*, I (0-65535)         1 channel, the high byte: value // 256, so 0-65535 maps to 0-255 in
                               every image alike (as PIL reads 16-bit RGB); an image using only 12
                               bits comes out dark: rescale such images yourself, all by one rule
    F, other modes             refused: save them as 8-bit grayscale or RGB PNG, one scale for all

Pixels are read upright: an EXIF orientation tag (phone and camera photos) is applied, as image viewers,
browsers, annotation tools and OpenCV show the picture, so masks drawn on what the annotator saw line up.
A header that claims more pixels than PIL's decompression-bomb limit is refused before decoding.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

_AS_GREY = {"1", "L", "LA", "La"}
_AS_RGB = {"RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
_PALETTE = {"P", "PA"}


def open_image(path) -> Image.Image:
    """PIL's lazy image at `path`; a header claiming more pixels than PIL's limit is a ValueError."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ValueError(f"refused, too large to decode safely: {error} If the image is real, "
                             "cut it into smaller tiles") from None


EXIF_ORIENTATION = 0x0112
TURNED = {5, 6, 7, 8}
"""EXIF orientations that turn a picture by 90 degrees (height and width swap)."""


def orientation(picture: Image.Image) -> int:
    """The picture's EXIF orientation, 1 (as stored) when it has none."""
    return int(picture.getexif().get(EXIF_ORIENTATION) or 1)


def upright(picture: Image.Image) -> Image.Image:
    """The picture as viewers show it: its EXIF orientation applied (the picture itself when it has none)."""
    return ImageOps.exif_transpose(picture) if orientation(picture) != 1 else picture


def decode_image(path) -> np.ndarray:
    """The picture at `path`, upright, as (H, W, C) uint8 with C = 1 or 3 (table above); ValueError says why not."""
    with open_image(Path(path)) as stored:
        picture = upright(stored)
        mode = picture.mode
        if mode in _PALETTE:
            palette = np.array(picture.getpalette() or [0, 0, 0]).reshape(-1, 3)
            mode = "LA" if (palette == palette[:, :1]).all() else "RGB"
        if mode in _AS_GREY:
            image = np.asarray(picture.convert("L"))
        elif mode in _AS_RGB:
            image = np.asarray(picture.convert("RGB"))
        elif mode.startswith("I;16") or mode == "I":
            image = _high_byte(np.asarray(picture).astype(np.int64), mode)
        else:
            raise ValueError(f"mode {mode} is not read (float or unusual pixels); save it as an 8-bit grayscale "
                             "or RGB PNG, scaling every image by the same rule")
    return image[:, :, None] if image.ndim == 2 else image


def _high_byte(values: np.ndarray, mode: str) -> np.ndarray:
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise ValueError(f"mode {mode} holds values {values.min()}..{values.max()} outside 0-65535; save it as "
                         "an 8-bit or 16-bit grayscale PNG")
    return (values >> 8).astype(np.uint8)
