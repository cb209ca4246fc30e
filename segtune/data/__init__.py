"""Datasets: read the three supported formats, validate them, split them, feed torch.

    data = load_dataset("path/to/folder")      # or an .npz, or "synthetic"
    data, excluded = exclude_images(data, "exclusions.txt")   # optional: leave listed ids out
    splits = make_splits(data, val_fraction=0.15, test_fraction=0.15, seed=0)

The torch datasets are imported on first use, so reading and inspecting data needs no torch.
"""

import importlib

from segtune.data.errors import DataError
from segtune.data.exclusions import exclude_images, read_exclusions, without_images, write_exclusions
from segtune.data.readers import load_dataset
from segtune.data.segmentation_data import SegmentationData
from segtune.data.splits import SPLITS, carve_folds, make_splits
from segtune.data.synthetic import make_synthetic

_TORCH_NAMES = ("CropDataset", "WholeImageDataset", "normalisation_stats")

__all__ = [
    "CropDataset", "DataError", "SPLITS", "SegmentationData", "WholeImageDataset", "carve_folds", "exclude_images",
    "load_dataset", "make_splits", "make_synthetic", "normalisation_stats", "read_exclusions", "without_images",
    "write_exclusions",
]


def __getattr__(name: str):
    if name not in _TORCH_NAMES:
        raise AttributeError(f"module 'segtune.data' has no attribute {name!r}")
    return getattr(importlib.import_module("segtune.data.dataset"), name)
