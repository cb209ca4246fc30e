"""Shared plotting: a headless matplotlib, saving a figure, and grids of pictures to compare by eye."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)


def picture_grid(rows: list[list[tuple]], path: Path, cell: float = 2.8) -> Path:
    """Rows of (picture, title): image, ground truth and predictions side by side, one row per image."""
    columns = max(len(row) for row in rows)
    figure, axes = plt.subplots(len(rows), columns, figsize=(cell * columns, cell * len(rows)), squeeze=False)
    for r, pictures in enumerate(rows):
        for c, (picture, title) in enumerate(pictures):
            axes[r, c].imshow(picture, cmap="gray" if picture.ndim == 2 else None)
            axes[r, c].set_title(title, fontsize=8)
        for axis in axes[r]:
            axis.axis("off")
    return save_figure(figure, path)


def image_and_truth(data, image_id: str) -> list[tuple]:
    """A prediction row's first two pictures: the image, and its mask in the dataset's palette (ignored pixels as 0)."""
    index = data.index_of()[image_id]
    image, mask, palette = data.images[index], data.masks[index], np.array(data.palette, dtype=np.uint8)
    return [(image.squeeze(), image_id), (palette[np.where(mask < len(palette), mask, 0)], "ground truth")]


def save_figure(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
