"""Loss registry: every loss takes (logits N,C,H,W; target N,H,W) and honours the ignore index.

    loss_fn = build_loss("cross_entropy_dice", ignore_index=255, class_weights=None)
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(logits, target, ignore_index: int, class_weights: torch.Tensor | None = None):
    return F.cross_entropy(logits, target, weight=class_weights, ignore_index=ignore_index)


def dice_loss(logits, target, ignore_index: int, eps: float = 1e-7):
    """1 - soft Dice per class over the batch, averaged over the classes present in the target."""
    probs, onehot = _probs_and_onehot(logits, target, ignore_index)
    intersection = (probs * onehot).sum((0, 2, 3))
    cardinality = (probs + onehot).sum((0, 2, 3))
    dice = 2 * intersection / cardinality.clamp_min(eps)
    present = onehot.sum((0, 2, 3)) > 0
    return (1 - dice)[present].mean() if present.any() else logits.sum() * 0


def _probs_and_onehot(logits, target, ignore_index):
    valid = (target != ignore_index).unsqueeze(1)
    safe_target = torch.where(valid.squeeze(1), target, torch.zeros_like(target))
    onehot = F.one_hot(safe_target, logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype) * valid
    return logits.softmax(1) * valid, onehot


def build_loss(name: str, ignore_index: int, class_weights: list[float] | None = None) -> LossFn:
    """The loss called `name`; a KeyError lists the valid names."""
    weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None

    def weighted(logits, target):
        return cross_entropy(logits, target, ignore_index, weights.to(logits.device) if weights is not None else None)

    registry: dict[str, LossFn] = {
        "cross_entropy": lambda lo, ta: cross_entropy(lo, ta, ignore_index),
        "weighted_cross_entropy": weighted,
        "dice": lambda lo, ta: dice_loss(lo, ta, ignore_index),
        "cross_entropy_dice": lambda lo, ta: cross_entropy(lo, ta, ignore_index) + dice_loss(lo, ta, ignore_index),
    }
    if name not in registry:
        raise KeyError(f"unknown loss {name!r}; valid losses: {', '.join(sorted(registry))}")
    if name == "weighted_cross_entropy" and weights is None:
        raise ValueError("loss 'weighted_cross_entropy' needs class_weights")
    return registry[name]


LOSS_NAMES = ("cross_entropy", "weighted_cross_entropy", "dice", "cross_entropy_dice")
