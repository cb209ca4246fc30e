"""Loss registry: every loss takes (logits N,C,H,W; target N,H,W) and honours the ignore index.

    loss_fn = build_loss("focal_tversky", ignore_index=255, tversky_alpha=0.7, tversky_beta=0.3, focal_gamma=0.75)

Region losses (Dice, Tversky, Jaccard, Lovasz) are computed over the whole batch per class and
averaged over the classes present in the target, so an absent rare class adds no noise.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from segmentation_models_pytorch.losses import LovaszLoss

from segtune.class_weights import CLASS_WEIGHT_CAP

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(logits, target, ignore_index: int, class_weights: torch.Tensor | None = None):
    weights = class_weights.to(logits.device) if class_weights is not None else None
    return F.cross_entropy(logits, target, weight=weights, ignore_index=ignore_index)


def per_image_weighted_cross_entropy(logits, target, ignore_index: int, cap: float):
    """The crop/weed report's weights, capped: in each image w_c = n_background / n_c."""
    valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target))
    counts = F.one_hot(safe, logits.shape[1]).mul(valid.unsqueeze(-1)).sum((1, 2)).float()  # (N, C)
    weights = torch.where(counts > 0, counts[:, :1].clamp_min(1) / counts.clamp_min(1), torch.zeros_like(counts))
    weights = weights.clamp(max=cap)
    pixel_weight = weights.gather(1, safe.flatten(1)).view_as(target) * valid
    pixel_loss = F.cross_entropy(logits, safe, reduction="none")
    return (pixel_loss * pixel_weight).sum() / pixel_weight.sum().clamp_min(1e-7)


def focal(logits, target, ignore_index: int, gamma: float, class_weights: torch.Tensor | None = None):
    """-(1 - p_t)^gamma log p_t, averaged over labelled pixels (weighted by class if given)."""
    valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target))
    log_p = F.log_softmax(logits, 1).gather(1, safe.unsqueeze(1)).squeeze(1)
    loss = -((1 - log_p.exp()) ** gamma) * log_p
    weight = valid.float() if class_weights is None else class_weights.to(logits.device)[safe] * valid
    return (loss * weight).sum() / weight.sum().clamp_min(1e-7)


def _region_terms(logits, target, ignore_index):
    """Per-class soft TP, FP, FN over the batch, and which classes the target contains."""
    valid = (target != ignore_index).unsqueeze(1)
    safe = torch.where(valid.squeeze(1), target, torch.zeros_like(target))
    truth = F.one_hot(safe, logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype) * valid
    probs = logits.softmax(1) * valid
    tp = (probs * truth).sum((0, 2, 3))
    return tp, probs.sum((0, 2, 3)) - tp, truth.sum((0, 2, 3)) - tp, truth.sum((0, 2, 3)) > 0


def _mean_present(per_class, present, logits):
    return per_class[present].mean() if present.any() else logits.sum() * 0


def tversky(logits, target, ignore_index: int, alpha: float, beta: float, gamma: float = 1.0, eps: float = 1e-7):
    """(1 - TP / (TP + alpha FN + beta FP))^gamma per class; gamma 1 is Tversky, alpha = beta = 0.5 is Dice."""
    tp, fp, fn, present = _region_terms(logits, target, ignore_index)
    index = tp / (tp + alpha * fn + beta * fp).clamp_min(eps)
    return _mean_present((1 - index).clamp_min(0) ** gamma, present, logits)


def dice_loss(logits, target, ignore_index: int):
    """1 - soft Dice per class over the batch, averaged over the classes present in the target."""
    return tversky(logits, target, ignore_index, alpha=0.5, beta=0.5)


def jaccard(logits, target, ignore_index: int, eps: float = 1e-7):
    tp, fp, fn, present = _region_terms(logits, target, ignore_index)
    return _mean_present(1 - tp / (tp + fp + fn).clamp_min(eps), present, logits)


def build_loss(name: str, ignore_index: int, class_weights: list[float] | None = None, *,
               tversky_alpha: float = 0.7, tversky_beta: float = 0.3, focal_gamma: float = 2.0,
               dice_weight: float = 1.0, weight_cap: float = CLASS_WEIGHT_CAP) -> LossFn:
    """The loss called `name` (one of segtune.names.LOSS_NAMES); a KeyError lists the valid names."""
    weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
    lovasz = LovaszLoss("multiclass", per_image=False, ignore_index=ignore_index)
    registry: dict[str, LossFn] = {
        "cross_entropy": partial(cross_entropy, ignore_index=ignore_index),
        "weighted_cross_entropy": partial(cross_entropy, ignore_index=ignore_index, class_weights=weights),
        "per_image_weighted_cross_entropy": partial(per_image_weighted_cross_entropy, ignore_index=ignore_index,
                                                    cap=weight_cap),
        "focal": partial(focal, ignore_index=ignore_index, gamma=focal_gamma, class_weights=weights),
        "dice": partial(dice_loss, ignore_index=ignore_index),
        "tversky": partial(tversky, ignore_index=ignore_index, alpha=tversky_alpha, beta=tversky_beta),
        "focal_tversky": partial(tversky, ignore_index=ignore_index, alpha=tversky_alpha, beta=tversky_beta,
                                 gamma=focal_gamma),
        "jaccard": partial(jaccard, ignore_index=ignore_index),
        "lovasz": lambda logits, target: lovasz(logits, target),
        "cross_entropy_dice": lambda logits, target: (cross_entropy(logits, target, ignore_index)
                                                      + dice_weight * dice_loss(logits, target, ignore_index)),
    }
    if name not in registry:
        raise KeyError(f"unknown loss {name!r}; valid losses: {', '.join(sorted(registry))}")
    return registry[name]
