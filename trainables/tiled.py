"""Validation of images larger than one training step: overlapping tiles, blended as `segtune predict` blends them.

One forward pass at validation never holds more pixels than a training step does (batch_size crops, each
rounded up to a multiple of 32): an image up to that size goes through whole, a larger one (a 2048x1536
field photo read at full size) in tiles of the network crop, batch_size at a time, their probabilities
blended with segtune.tiling's window. So a trial whose training fits in memory also fits when it scores,
and the validation score is the score `segtune predict` would give (the same tiles, overlap and blend).

    logits = validation_logits(model, images, cfg)   # (B, K, H, W): logits, or log-probabilities when tiled
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from segtune.tiling import DEFAULT_OVERLAP, blend_window, network_tile, overlap_pixels, tile_starts
from trainables.config import TrialConfig
from trainables.model import predict_logits


def step_pixels(cfg: TrialConfig) -> int:
    """Pixels in one training step's forward pass: batch_size network-sized crops."""
    tile_h, tile_w = network_tile(cfg.crop)
    return cfg.batch_size * tile_h * tile_w


def validation_logits(model: torch.nn.Module, images: torch.Tensor, cfg: TrialConfig) -> torch.Tensor:
    """Scores (B, K, H, W) to take argmax, softmax or a loss of: whole-image logits when the batch fits in one
    training step's pixels, else log-probabilities of blended tiles (softmax gives the blended probabilities)."""
    if images.shape[0] * images.shape[-2] * images.shape[-1] <= step_pixels(cfg):
        return predict_logits(model, images)
    return torch.cat([tiled_log_probabilities(model, image[None], network_tile(cfg.crop), cfg.batch_size)
                      for image in images])


def tiled_log_probabilities(model: torch.nn.Module, image: torch.Tensor, tile: list[int], batch_size: int,
                            overlap: float = DEFAULT_OVERLAP) -> torch.Tensor:
    """log of the blended class probabilities (1, K, H, W) of one image (1, C, H, W) from overlapping tiles
    (each side a multiple of 32), `batch_size` tiles a forward pass; an image smaller than a tile is mirrored out."""
    height, width = image.shape[-2:]
    tile_h, tile_w = tile
    pad_h, pad_w = max(0, tile_h - height), max(0, tile_w - width)
    if pad_h or pad_w:
        image = F.pad(image, (0, pad_w, 0, pad_h), mode="reflect" if pad_h < height and pad_w < width else "replicate")
    ramp_h, ramp_w = overlap_pixels(tile_h, overlap), overlap_pixels(tile_w, overlap)
    window = torch.from_numpy(blend_window(tile_h, ramp_h)[:, None] * blend_window(tile_w, ramp_w)).to(image.device)
    corners = [(y, x) for y in tile_starts(image.shape[-2], tile_h, tile_h - ramp_h)
               for x in tile_starts(image.shape[-1], tile_w, tile_w - ramp_w)]
    weights = torch.zeros(image.shape[-2:], device=image.device)
    probs = None
    for first in range(0, len(corners), batch_size):
        batch = corners[first:first + batch_size]
        tiles = torch.cat([image[..., y:y + tile_h, x:x + tile_w] for y, x in batch])
        out = torch.softmax(model(tiles).float(), 1)
        if probs is None:
            probs = torch.zeros((1, out.shape[1], *image.shape[-2:]), device=image.device)
        for i, (y, x) in enumerate(batch):
            probs[0, :, y:y + tile_h, x:x + tile_w] += out[i] * window
            weights[y:y + tile_h, x:x + tile_w] += window
    return torch.log((probs / weights)[..., :height, :width].clamp_min(torch.finfo(torch.float32).tiny))
