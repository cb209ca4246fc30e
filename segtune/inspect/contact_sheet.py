"""Contact sheets: a grid of (image | coloured mask) thumbnails with captions, one PNG per group."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from segtune.data import SegmentationData

THUMBNAIL = 160
"""Longest side of each thumbnail, in pixels."""
MAX_TILES = 24
"""Images drawn per sheet; the title says how many more a group holds."""
_COLUMNS = 4
_CAPTION = 14
_UNLABELLED = (128, 128, 128)


def colour_mask(mask: np.ndarray, palette, num_classes: int) -> np.ndarray:
    """(H, W, 3) picture of a class-index mask; values that are no class (ignore) are grey."""
    lookup = np.tile(np.array(_UNLABELLED, dtype=np.uint8), (256, 1))
    lookup[:num_classes] = np.array(palette[:num_classes], dtype=np.uint8).reshape(-1, 3)
    return lookup[mask]


def _thumbnail(array: np.ndarray, resample) -> Image.Image:
    """The picture scaled (up or down) so that its longest side is THUMBNAIL."""
    picture = Image.fromarray(array[:, :, 0] if array.ndim == 3 and array.shape[2] == 1 else array).convert("RGB")
    scale = THUMBNAIL / max(picture.size)
    return picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))), resample)


def _fit(draw: ImageDraw.ImageDraw, text: str, width: int) -> str:
    while len(text) > 4 and draw.textlength(text) > width:
        text = text[:-4] + "..."
    return text


def draw_contact_sheet(data: SegmentationData, ids: list[str], title: str, path,
                       captions: dict[str, str] | None = None) -> Path:
    """Save a sheet of the images `ids` (each beside its mask) to `path`, with a title and captions."""
    index, captions = data.index_of(), captions or {}
    shown = ids[:MAX_TILES]
    columns = min(_COLUMNS, len(shown))
    rows = -(-len(shown) // columns)
    shape = [data.images[index[i]].shape[:2] for i in shown]
    thumb_h = max(round(THUMBNAIL * h / max(h, w)) for h, w in shape)
    tile_w, tile_h = 2 * THUMBNAIL + 6, thumb_h + 2 * _CAPTION + 6
    sheet = Image.new("RGB", (columns * tile_w + 6, rows * tile_h + 2 * _CAPTION), "white")
    draw = ImageDraw.Draw(sheet)
    more = f"  (+{len(ids) - len(shown)} more, not shown)" if len(ids) > len(shown) else ""
    draw.text((6, 4), title + more, fill="black")
    palette = data.palette or tuple((v, v, v) for v in np.linspace(0, 255, data.num_classes).astype(int))
    for position, image_id in enumerate(shown):
        row = index[image_id]
        left, top = 6 + (position % columns) * tile_w, 2 * _CAPTION + (position // columns) * tile_h
        sheet.paste(_thumbnail(data.images[row], Image.BILINEAR), (left, top))
        mask = colour_mask(data.masks[row], palette, data.num_classes)
        sheet.paste(_thumbnail(mask, Image.NEAREST), (left + THUMBNAIL + 2, top))
        draw.text((left, top + thumb_h + 2), _fit(draw, image_id, tile_w - 8), fill="black")
        if image_id in captions:
            draw.text((left, top + thumb_h + 2 + _CAPTION), _fit(draw, captions[image_id], tile_w - 8), fill=(160, 0, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
