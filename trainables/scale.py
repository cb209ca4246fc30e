"""A trial's image scale: it trains and predicts on its images resized by `scale`, and is scored at the size read.

`scale` (TrialConfig.scale, searched with space_overrides `scale: [0.5, 1.0]`) is a share of the size the data
is read at (after the search's `resize`). A trial resizes its training and validation images once per scale it
uses (segtune.data.resize: images bilinear, masks nearest), not every epoch. Training windows stay the network
crop, so a step costs what it costs at scale 1 and sees 1/scale**2 as much of an image; below scale 1 the crop is
at most the largest scaled image (rounded up to 32 pixels), so a crop is never mostly padding. Validation
predicts on the scaled images and resizes the logits back to the labels' size (bilinear) before the loss, the
confusion matrix and the kept probabilities: every trial is scored on the same pixels, whatever its scale.

Progressive resolution (progressive_epochs > 0): the first epochs (ASHA's first rung) train at
scale * progressive_scale on crops shrunk by progressive_scale too, the same field of view with about
progressive_scale**2 of the pixels, so ASHA judges a trial while it is cheap; later epochs train at `scale`.

    scale = epoch_scale(cfg, epoch)                  # 0.25 in the first rung of a scale-0.5 trial at factor 0.5
    view = scaled_data(data, ids, scale)             # images and masks resized once
    logits = to_reference(logits, masks.shape[-2:])  # scored at the labels' size
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from segtune.data import SegmentationData
from segtune.data.dataset import to_tensor
from segtune.data.resize import resize_image, resize_mask, scaled_size
from segtune.tiling import network_tile
from trainables.config import TrialConfig
from trainables.model import predict_logits


def epoch_scale(cfg: TrialConfig, epoch: int) -> float:
    """The scale epoch `epoch` (1-based) trains and validates at: scale * progressive_scale in the progressive
    epochs, else scale."""
    return cfg.scale * cfg.progressive_scale if epoch <= cfg.progressive_epochs else cfg.scale


def crop_at(cfg: TrialConfig, scale: float, images: list[np.ndarray]) -> tuple[int, int]:
    """The training crop at `scale`: the network crop, shrunk by progressive_scale below the trial's own scale and
    rounded up to 32 pixels; below scale 1 at most the largest of `images` (the scaled ones) rounded up alike."""
    shrunk = network_tile([side * scale / cfg.scale for side in cfg.crop])
    crop = list(cfg.crop) if scale == cfg.scale else [int(side) for side in shrunk]
    if scale < 1:
        largest = network_tile([max(image.shape[axis] for image in images) for axis in (0, 1)])
        crop = [min(side, limit) for side, limit in zip(crop, largest)]
    return tuple(crop)


def scaled_data(data: SegmentationData, ids: list[str], scale: float) -> SegmentationData:
    """The images `ids` of `data` resized by `scale` (data itself at scale 1): one copy, made when asked."""
    if scale == 1:
        return data
    index = data.index_of()
    images, masks = [], []
    for image_id in ids:
        image, mask = data.images[index[image_id]], data.masks[index[image_id]]
        size = scaled_size(mask.shape, scale)
        images.append(resize_image(image, size))
        masks.append(resize_mask(mask, size))
    return dataclasses.replace(data, images=images, masks=masks, names=list(ids))


class ScaledValidation(Dataset):
    """Validation pairs: the image as the trial sees it (from `scaled`), the mask at the size read (from
    `reference`), so scores are computed on the labels' own pixels."""

    def __init__(self, scaled: SegmentationData, reference: SegmentationData, ids: list[str], mean, std):
        scaled_index, reference_index = scaled.index_of(), reference.index_of()
        self.pairs = [(scaled_index[i], reference_index[i]) for i in ids]
        self.scaled, self.reference, self.mean, self.std = scaled, reference, mean, std

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, position: int):
        scaled, reference = self.pairs[position]
        mask = torch.from_numpy(self.reference.masks[reference].astype(np.int64))
        return to_tensor(self.scaled.images[scaled], self.mean, self.std), mask


def to_reference(scores: torch.Tensor, size) -> torch.Tensor:
    """(B, K, h, w) logits (or log-probabilities) resized to (B, K, *size), bilinear; unchanged at that size."""
    if tuple(scores.shape[-2:]) == tuple(size):
        return scores
    return F.interpolate(scores, size=tuple(size), mode="bilinear", align_corners=False)


def reference_logits(model: torch.nn.Module, image: np.ndarray, cfg: TrialConfig) -> torch.Tensor:
    """Logits (1, K, H, W) of an (H, W, C) uint8 image at its own size, predicted at the trial's scale."""
    scaled = resize_image(image, scaled_size(image.shape[:2], cfg.scale))
    logits = predict_logits(model, to_tensor(scaled, cfg.mean, cfg.std)[None])
    return to_reference(logits, image.shape[:2])


def reference_loader(data: SegmentationData, ids: list[str], cfg: TrialConfig) -> DataLoader:
    """The images `ids` at the trial's scale with their masks at the size read, one a batch: what evaluate() scores
    a checkpoint on (bench/score_checkpoint.py, a comparison's test score)."""
    return DataLoader(ScaledValidation(scaled_data(data, ids, cfg.scale), data, ids, cfg.mean, cfg.std), batch_size=1)
