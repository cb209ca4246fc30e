"""The in-memory dataset: decoded once, shared with trials through Ray's object store."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class SegmentationData:
    images: list[np.ndarray]
    """Decoded images, each (H, W, C) uint8; C is 1 (grayscale) or 3 (RGB)."""
    masks: list[np.ndarray]
    """Class-index masks, each (H, W) uint8; `ignore_index` marks unlabelled pixels."""
    names: list[str]
    """Image ids (file stems, or npz row numbers), one per image, unique."""
    classes: tuple[str, ...]
    """Class names in index order."""
    ignore_index: int | None = 255
    """Mask value that no loss or metric counts; None when every pixel is labelled."""
    palette: tuple[tuple[int, int, int], ...] = ()
    """RGB colour per class for colour masks and pictures."""
    splits: dict[str, list[str]] = field(default_factory=dict)
    """The dataset's own splits (train/val/test -> ids), respected by make_splits."""
    source: str = ""

    @property
    def in_channels(self) -> int:
        return int(self.images[0].shape[2])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def index_of(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def classes_present(self) -> list[set[int]]:
        """The classes each image contains (ignore pixels left out)."""
        return [set(int(c) for c in np.unique(m) if c < self.num_classes) for m in self.masks]


def default_palette(num_classes: int) -> tuple[tuple[int, int, int], ...]:
    base = [(0, 0, 0), (255, 255, 255), (216, 67, 82), (60, 180, 75), (0, 130, 200), (245, 130, 48),
            (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
            (0, 128, 128), (170, 110, 40)]
    rng = np.random.default_rng(0)
    extra = [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(max(0, num_classes - len(base)))]
    return tuple((base + extra)[:num_classes])
