"""Torch datasets over a SegmentationData: random crops for training, whole images for scoring."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from segtune.data.segmentation_data import SegmentationData


def normalisation_stats(data: SegmentationData, ids: list[str]) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the given images, on the 0..1 scale."""
    index = data.index_of()
    pixels = np.concatenate([data.images[index[i]].reshape(-1, data.in_channels) for i in ids]) / 255.0
    return pixels.mean(0).round(4).tolist(), np.maximum(pixels.std(0), 1e-3).round(4).tolist()


def to_tensor(image: np.ndarray, mean, std) -> torch.Tensor:
    scaled = (image.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(scaled.transpose(2, 0, 1)))


class CropDataset(Dataset):
    """Random (H, W) crops, padded where an image is smaller; the crop depends on seed, epoch and item."""

    def __init__(self, data: SegmentationData, ids: list[str], crop: tuple[int, int], mean, std,
                 seed: int, pad_value: int, augment=None):
        index = data.index_of()
        self.items = [index[i] for i in ids]
        self.data, self.crop, self.mean, self.std = data, tuple(crop), mean, std
        self.seed, self.pad_value, self.epoch, self.augment = seed, pad_value, 0, augment

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, position: int):
        rng = np.random.default_rng((self.seed, self.epoch, position))
        image, mask = self.random_crop(rng, self.items[position])
        if self.augment is not None:
            # augment(image, mask, rng, draw_other): draw_other gives another random crop (CutMix)
            image, mask = self.augment(image, mask, rng, self.random_crop)
        return to_tensor(image, self.mean, self.std), torch.from_numpy(mask.astype(np.int64))

    def random_crop(self, rng: np.random.Generator, item: int | None = None):
        """A random crop of `item` (a random training image if None) as (H, W, C) and (H, W) arrays."""
        item = self.items[int(rng.integers(len(self.items)))] if item is None else item
        image, mask = _pad_to(self.data.images[item], self.data.masks[item], self.crop, self.pad_value)
        top = int(rng.integers(0, image.shape[0] - self.crop[0] + 1))
        left = int(rng.integers(0, image.shape[1] - self.crop[1] + 1))
        window = (slice(top, top + self.crop[0]), slice(left, left + self.crop[1]))
        return image[window], mask[window]


class WholeImageDataset(Dataset):
    """Whole images in their own size; the model wrapper pads them to what the network needs."""

    def __init__(self, data: SegmentationData, ids: list[str], mean, std):
        index = data.index_of()
        self.items = [index[i] for i in ids]
        self.data, self.mean, self.std = data, mean, std

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, position: int):
        item = self.items[position]
        mask = torch.from_numpy(self.data.masks[item].astype(np.int64))
        return to_tensor(self.data.images[item], self.mean, self.std), mask


def _pad_to(image, mask, size, pad_value):
    pad_h, pad_w = max(0, size[0] - image.shape[0]), max(0, size[1] - image.shape[1])
    if pad_h == 0 and pad_w == 0:
        return image, mask
    image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect" if min(image.shape[:2]) > 1 else "edge")
    mask = np.pad(mask, ((0, pad_h), (0, pad_w)), constant_values=pad_value)
    return image, mask
