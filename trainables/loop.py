"""One training epoch and one evaluation pass, on plain torch objects (no Ray), so pytest runs them."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from segtune import metrics, names
from trainables.config import TrialConfig
from trainables.device import Compute
from trainables.scale import to_reference
from trainables.tiled import validation_logits


def train_epoch(model, loader, loss_fn, optimizer, compute: Compute, max_steps: int | None = None,
                grad_clip: float | None = None) -> float:
    """Mean training loss over the epoch; a non-finite loss stops the trial with the reason."""
    model.train()
    scaler = compute.scaler()
    total, steps = 0.0, 0
    for step, (images, masks) in enumerate(itertools.islice(loader, max_steps)):  # no batch made beyond max_steps
        images, masks = compute.batch(images), masks.to(compute.device, non_blocking=True)
        with compute.autocast():
            logits = model(images)
        loss = loss_fn(logits.float(), masks)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower lr or check the data")
        optimizer.zero_grad(set_to_none=True)
        (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        total, steps = total + loss.item(), steps + 1
    return total / max(steps, 1)


@torch.no_grad()
def evaluate(model, loader, loss_fn, cfg: TrialConfig, compute: Compute, keep: list | None = None) -> dict[str, float]:
    """Validation loss and metrics from one confusion matrix over the whole split; `keep`, when given, receives each
    image's class probabilities (float16 on the CPU) from the same pass (trainables/val_probabilities.py). Images
    smaller than their masks (a trial's scale below 1) are predicted at their size and scored at the masks' size."""
    model.eval()
    matrix = torch.zeros(cfg.num_classes, cfg.num_classes, dtype=torch.long)
    loss_sum, pixels = 0.0, 0
    for images, masks in loader:
        images, masks = compute.batch(images), masks.to(compute.device)
        with compute.autocast():
            logits = validation_logits(model, images, cfg).float()  # tiled above one training step's pixels
        logits = to_reference(logits, masks.shape[-2:])
        valid = int((masks != cfg.ignore_index).sum())
        loss_sum += loss_fn(logits, masks).item() * valid
        pixels += valid
        matrix += metrics.confusion_matrix(masks, logits.argmax(1), cfg.num_classes, cfg.ignore_index).cpu()
        if keep is not None:
            keep.extend(torch.softmax(logits, 1).to("cpu", torch.float16).unbind(0))
    return summarise(matrix.numpy(), cfg, loss_sum / max(pixels, 1))


def summarise(matrix: np.ndarray, cfg: TrialConfig, val_loss: float) -> dict[str, float]:
    ious = metrics.iou_per_class(matrix)
    result = {
        names.VAL_MIOU: metrics.mean_iou(matrix, cfg.exclude_from_mean),
        names.VAL_PIXEL_ACCURACY: metrics.pixel_accuracy(matrix),
        names.VAL_LOSS: float(val_loss),
    }
    class_names = cfg.class_names or tuple(str(c) for c in range(cfg.num_classes))
    for class_name, iou in zip(class_names, ious):
        result[names.class_iou_name(class_name)] = float(np.nan_to_num(iou, nan=0.0))
    return result
