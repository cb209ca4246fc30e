"""Datasets: read the three supported formats, validate them, split them, feed torch.

    data = load_dataset("path/to/folder")      # or an .npz, or "synthetic"
    splits = make_splits(data, val_fraction=0.15, test_fraction=0.15, seed=0)
"""

from segtune.data.dataset import CropDataset, WholeImageDataset, normalisation_stats
from segtune.data.errors import DataError
from segtune.data.readers import load_dataset
from segtune.data.segmentation_data import SegmentationData
from segtune.data.splits import SPLITS, make_splits
from segtune.data.synthetic import make_synthetic

__all__ = [
    "CropDataset", "DataError", "SPLITS", "SegmentationData", "WholeImageDataset",
    "load_dataset", "make_splits", "make_synthetic", "normalisation_stats",
]
