"""What changes over a trial's epochs: the loss stage, the learning-rate schedule, early stopping.

Pure functions and small torch factories, so each rule is checked against hand-worked numbers.
"""

from __future__ import annotations

import math

import torch

from trainables.config import TrialConfig

WARMUP, MAIN = "warmup", "main"


def stage_of(cfg: TrialConfig, epoch: int) -> str:
    """Epochs 1..warmup_epochs train with cross-entropy at warmup_lr; later ones with cfg.loss at cfg.lr."""
    return WARMUP if epoch <= cfg.warmup_epochs else MAIN


def start_stage(cfg: TrialConfig, optimizer: torch.optim.Optimizer, stage: str):
    """Set the stage's learning rate; the main stage gets a fresh scheduler (None for 'none')."""
    lr = cfg.warmup_lr if stage == WARMUP else cfg.lr
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] = lr
    return build_scheduler(cfg, optimizer) if stage == MAIN else None


def build_scheduler(cfg: TrialConfig, optimizer):
    main_epochs = cfg.max_epochs - cfg.warmup_epochs
    if cfg.scheduler == "plateau":  # on val mIoU, not on a (weighted) loss that may rise while mIoU improves
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=2)
    if cfg.scheduler == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.9)
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: cosine_warmup_factor(step, cfg.scheduler_warmup_epochs, main_epochs))
    return None


def step_scheduler(scheduler, val_miou: float) -> None:
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(val_miou)
    elif scheduler is not None:
        scheduler.step()


def cosine_warmup_factor(step: int, warmup: int, total: int) -> float:
    """lr multiplier after `step` scheduler steps: linear warm-up to 1, then cosine down to 0 at `total`."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1 + math.cos(math.pi * progress))


def patience_exhausted(history: list[float], patience: int | None, min_delta: float) -> bool:
    """True once `patience` epochs in a row failed to beat the best val mIoU by more than min_delta."""
    if patience is None:
        return False
    best, since = -math.inf, 0
    for value in history:
        if value > best + min_delta:
            best, since = value, 0
        else:
            since += 1
    return since >= patience
