"""The Ray Tune function trainable: build -> resume -> epoch loop -> report.

Run by search/ through `tune.with_parameters(train_segmentation, data=..., splits=..., fixed=...)`;
`data` is a SegmentationData held once per node in Ray's object store.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import torch
from ray import tune
from torch.utils.data import DataLoader

from segtune import names
from segtune.data import CropDataset, SegmentationData, WholeImageDataset
from trainables.config import TrialConfig
from trainables.loop import evaluate, train_epoch
from trainables.losses import build_loss
from trainables.model import build_model

CHECKPOINT_FILE = "checkpoint.pt"


def train_segmentation(config: dict, data: SegmentationData, splits: dict[str, list[str]], fixed: dict) -> None:
    """Ray's entry: typed config from the sampled dict, resume from Tune's checkpoint, report each epoch."""
    overlap = sorted(set(config) & set(fixed))
    if overlap:
        raise KeyError(f"parameters {overlap} are both searched and fixed; remove them from one")
    cfg = TrialConfig.from_dict({**fixed, **config})
    checkpoint = tune.get_checkpoint()
    state = None
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    run_trial(cfg, data, splits, _report_to_tune, state)


def _report_to_tune(result: dict, state: dict) -> None:
    with tempfile.TemporaryDirectory() as folder:
        torch.save(state, Path(folder) / CHECKPOINT_FILE)
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))


def run_trial(cfg: TrialConfig, data: SegmentationData, splits: dict[str, list[str]],
              report: Callable[[dict, dict], None], state: dict | None = None) -> None:
    """build -> resume -> epoch loop -> report(metrics, checkpoint state); no Ray needed."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, optimizer, loss_fn = build_training(cfg, device)
    start_epoch, best = resume(state, model, optimizer)
    train_set = CropDataset(data, splits["train"], cfg.crop, cfg.mean, cfg.std, cfg.seed, cfg.ignore_index)
    val_loader = DataLoader(WholeImageDataset(data, splits["val"], cfg.mean, cfg.std),
                            batch_size=1, num_workers=cfg.num_workers)
    for epoch in range(start_epoch, cfg.max_epochs + 1):
        train_set.epoch = epoch
        loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=len(train_set) > cfg.batch_size,
                            num_workers=cfg.num_workers, generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
        train_loss = train_epoch(model, loader, loss_fn, optimizer, device, cfg.steps_per_epoch)
        result = evaluate(model, val_loader, loss_fn, cfg, device)
        best = max(best, result[names.VAL_MIOU])
        result.update({names.EPOCH: epoch, names.TRAIN_LOSS: train_loss, names.BEST_VAL_MIOU: best,
                       names.LR: optimizer.param_groups[0]["lr"]})
        report(result, checkpoint_state(model, optimizer, epoch, best, cfg))


def build_training(cfg: TrialConfig, device: torch.device):
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device)
    optimizers = {
        "adam": lambda p: torch.optim.Adam(p, lr=cfg.lr, weight_decay=cfg.weight_decay),
        "adamw": lambda p: torch.optim.AdamW(p, lr=cfg.lr, weight_decay=cfg.weight_decay),
        "nadam": lambda p: torch.optim.NAdam(p, lr=cfg.lr, weight_decay=cfg.weight_decay),
        "sgd": lambda p: torch.optim.SGD(p, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay),
    }
    optimizer = optimizers[cfg.optimizer](model.parameters())
    return model, optimizer, build_loss(cfg.loss, cfg.ignore_index, cfg.class_weights)


def checkpoint_state(model, optimizer, epoch: int, best: float, cfg: TrialConfig) -> dict:
    """A checkpoint rebuilds itself: weights, optimizer, epoch and the TrialConfig that made them."""
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
            "best_val_miou": best, "trial_config": cfg.to_dict()}


def resume(state: dict | None, model, optimizer) -> tuple[int, float]:
    """Load a checkpoint state after a restart; returns (first epoch to run, best mIoU so far)."""
    if state is None:
        return 1, 0.0
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return state["epoch"] + 1, state["best_val_miou"]


def load_model(checkpoint_file: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, TrialConfig]:
    """Rebuild a trained model from a checkpoint file alone."""
    state = torch.load(checkpoint_file, map_location=device, weights_only=True)
    cfg = TrialConfig.from_dict(state["trial_config"])
    model = build_model(cfg.__class__(**{**cfg.to_dict(), "encoder_weights": None}))
    model.load_state_dict(state["model"])
    return model.to(device).eval(), cfg
