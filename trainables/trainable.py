"""The Ray Tune function trainable: build -> resume -> epoch loop -> report.

Run by search/ through `tune.with_parameters(train_segmentation, data=..., splits=..., fixed=...)`;
`data` is a SegmentationData held once per node in Ray's object store.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import tempfile
from pathlib import Path
from dataclasses import dataclass
from typing import Callable

import ray
import torch
from ray import tune
from torch.utils.data import DataLoader, WeightedRandomSampler

from segtune import names
from segtune.class_weights import class_weights, pixel_counts
from segtune.data import CropDataset, SegmentationData
from segtune.names import CHECKPOINT_FILE
from trainables.augment import build_augmenter, rarest_class
from trainables.config import TrialConfig
from trainables.device import Compute, trial_compute
from trainables.loop import evaluate, train_epoch
from trainables.losses import build_loss
from trainables.model import build_model, follow_weights
from trainables.scale import ScaledValidation, crop_at, epoch_scale, scaled_data
from trainables.schedule import MAIN, WARMUP, patience_exhausted, stage_of, start_stage, step_scheduler
from trainables.val_probabilities import VAL_PROBABILITIES, best_epoch_probabilities, write_val_probabilities



def train_segmentation(config: dict, data: SegmentationData, splits: dict[str, list[str]], fixed: dict) -> None:
    """Ray's entry: typed config from the sampled dict, resume from Tune's checkpoint, report each epoch."""
    overlap = sorted(set(config) & set(fixed))
    if overlap:
        raise KeyError(f"parameters {overlap} are both searched and fixed; remove them from one")
    cfg = TrialConfig.from_dict({**fixed, **config})
    release_memory()  # Ray reuses this process across trials: start without the last trial's heap
    checkpoint = tune.get_checkpoint()
    state = None
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    run_trial(cfg, data, splits, _report_to_tune, state)


def release_memory() -> None:
    """Hand freed heap back to the OS. glibc keeps what a finished trial freed (its model, optimizer,
    batches) mapped to the process, so a reused trial process grows trial after trial without this."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _report_to_tune(result: dict, state: dict) -> None:
    with tempfile.TemporaryDirectory() as folder:
        torch.save({k: v for k, v in state.items() if k != VAL_PROBABILITIES}, Path(folder) / CHECKPOINT_FILE)
        if state.get(VAL_PROBABILITIES) is not None:  # a file of its own: loading the model never reads it
            write_val_probabilities(state[VAL_PROBABILITIES], Path(folder))
        tune.report({**result, names.NODE_ID: ray.get_runtime_context().get_node_id()},
                    checkpoint=tune.Checkpoint.from_directory(folder))


def run_trial(cfg: TrialConfig, data: SegmentationData, splits: dict[str, list[str]],
              report: Callable[[dict, dict], None], state: dict | None = None) -> None:
    """build -> resume -> epoch loop -> report(metrics, checkpoint state); no Ray needed."""
    cfg = follow_weights(cfg)  # named weights set the normalisation; the checkpoint records them
    compute = trial_compute(cfg.mixed_precision, cfg.channels_last, cfg.gpu_fraction)
    model, optimizer, losses = build_training(cfg, compute)
    start_epoch, history = (1, []) if state is None else (state["epoch"] + 1, list(state["history"]))
    scheduler = start_stage(cfg, optimizer, stage_of(cfg, start_epoch))
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler"):
            scheduler.load_state_dict(state["scheduler"])
    inputs = None
    for epoch in range(start_epoch, cfg.max_epochs + 1):
        stage, scale = stage_of(cfg, epoch), epoch_scale(cfg, epoch)
        if epoch > start_epoch and stage != stage_of(cfg, epoch - 1):
            scheduler = start_stage(cfg, optimizer, stage)
        if inputs is None or inputs.scale != scale:  # images resized once per scale, not every epoch
            inputs = build_inputs(cfg, data, splits, scale, compute.device.type == "cuda")
        lr = optimizer.param_groups[0]["lr"]
        train_loss = train_epoch(model, train_loader(cfg, inputs.train_set, inputs.sampler_weights, epoch),
                                 losses[stage], optimizer, compute, cfg.steps_per_epoch, cfg.grad_clip)
        maps = [] if cfg.keep_val_probabilities else None
        result = evaluate(model, inputs.val_loader, losses[stage], cfg, compute, maps)
        history.append(result[names.VAL_MIOU])
        if stage == MAIN:
            step_scheduler(scheduler, result[names.VAL_MIOU])
        stop = patience_exhausted(history, cfg.early_stop_patience, cfg.early_stop_min_delta)
        result.update({names.EPOCH: epoch, names.TRAIN_LOSS: train_loss, names.BEST_VAL_MIOU: max(history),
                       names.LR: lr, names.LOSS_STAGE: int(stage == MAIN), names.EARLY_STOPPED: int(stop),
                       names.TRAIN_SCALE: scale, names.TRAIN_PIXELS: inputs.epoch_pixels})
        report(result, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                        "history": history, "trial_config": checkpoint_config(cfg, scale),
                        "scheduler": scheduler.state_dict() if scheduler is not None else None,
                        VAL_PROBABILITIES: best_epoch_probabilities(maps, splits["val"], history)})
        if stop:
            return


def build_training(cfg: TrialConfig, compute: Compute):
    """Model, optimizer and the loss of each stage (cross-entropy warm-up, then cfg.loss)."""
    torch.manual_seed(cfg.seed)
    model = compute.model(build_model(cfg))
    optimizers = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "nadam": torch.optim.NAdam,
                  "sgd": lambda params, **kw: torch.optim.SGD(params, momentum=0.9, **kw)}
    optimizer = optimizers[cfg.optimizer](model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    weights = None if cfg.class_weighting == "none" else class_weights(cfg.class_pixel_counts, cfg.class_weighting,
                                                                        cfg.class_weight_cap)
    main = build_loss(cfg.loss, cfg.ignore_index, weights, tversky_alpha=cfg.tversky_alpha,
                      tversky_beta=cfg.tversky_beta, focal_gamma=cfg.focal_gamma, dice_weight=cfg.dice_weight,
                      weight_cap=cfg.class_weight_cap)
    return model, optimizer, {WARMUP: build_loss("cross_entropy", cfg.ignore_index), MAIN: main}


@dataclass(frozen=True)
class EpochInputs:
    """What the epochs at one scale train and validate on (trainables/scale.py)."""
    scale: float
    """The scale the images were resized by."""
    train_set: CropDataset
    """Random crops of the training images at that scale."""
    sampler_weights: list[float] | None
    """Per-image draw weights (oversample_rare), or None for a plain shuffle."""
    val_loader: DataLoader
    """Validation images at that scale with their masks at the size read."""
    epoch_pixels: int
    """Pixels of the training crops one epoch passes through the network (steps x batch x crop)."""


def build_inputs(cfg: TrialConfig, data: SegmentationData, splits: dict[str, list[str]], scale: float,
                 pin_memory: bool) -> EpochInputs:
    """Training crops and validation images at `scale`, the images resized here once."""
    view = scaled_data(data, splits["train"] + splits["val"], scale)
    index = view.index_of()
    crop = crop_at(cfg, scale, [view.images[index[i]] for i in splits["train"]])
    train_set, sampler_weights = build_train_set(dataclasses.replace(cfg, crop=crop), view, splits["train"])
    val_loader = DataLoader(ScaledValidation(view, data, splits["val"], cfg.mean, cfg.std), batch_size=1,
                            num_workers=cfg.num_workers, pin_memory=pin_memory)
    pixels = epoch_images(cfg, len(train_set)) * crop[0] * crop[1]
    return EpochInputs(scale, train_set, sampler_weights, val_loader, pixels)


def epoch_images(cfg: TrialConfig, train_images: int) -> int:
    """Crops one epoch trains on: whole batches (a last partial one is dropped, as train_loader does, unless the
    split fits in one batch), at most steps_per_epoch of them."""
    images = train_images if train_images <= cfg.batch_size else train_images // cfg.batch_size * cfg.batch_size
    return images if cfg.steps_per_epoch is None else min(images, cfg.steps_per_epoch * cfg.batch_size)


def checkpoint_config(cfg: TrialConfig, scale: float) -> dict:
    """The trial config a checkpoint rebuilds and runs its model with: at the scale its epoch trained at (a
    progressive epoch's model predicts at scale * progressive_scale)."""
    at_scale = cfg if scale == cfg.scale else dataclasses.replace(cfg, scale=scale, progressive_epochs=0)
    return at_scale.to_dict()


def build_train_set(cfg: TrialConfig, data: SegmentationData, ids: list[str]):
    """Random crops with augmentation; images holding the rarest class weighted by oversample_rare."""
    counts = cfg.class_pixel_counts or pixel_counts([data.masks[data.index_of()[i]] for i in ids], cfg.num_classes)
    rare = rarest_class(counts)
    augment = build_augmenter(cfg, data, ids, rare)
    train_set = CropDataset(data, ids, cfg.crop, cfg.mean, cfg.std, cfg.seed, cfg.ignore_index, augment)
    if cfg.oversample_rare == 1:
        return train_set, None
    index = data.index_of()
    has_rare = [bool((data.masks[index[i]] == rare).any()) for i in ids]
    return train_set, [cfg.oversample_rare if flag else 1.0 for flag in has_rare]


def train_loader(cfg: TrialConfig, train_set: CropDataset, sampler_weights, epoch: int) -> DataLoader:
    train_set.epoch = epoch
    generator = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    sampler = None if sampler_weights is None else WeightedRandomSampler(sampler_weights, len(train_set), generator=generator)
    return DataLoader(train_set, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                      drop_last=len(train_set) > cfg.batch_size, num_workers=cfg.num_workers, generator=generator,
                      pin_memory=torch.cuda.is_available())


def load_model(checkpoint_file: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, TrialConfig]:
    """Rebuild a trained model from a checkpoint file alone."""
    state = torch.load(checkpoint_file, map_location=device, weights_only=True)
    cfg = TrialConfig.from_dict(state["trial_config"])
    model = build_model(cfg.__class__(**{**cfg.to_dict(), "encoder_weights": None}))
    model.load_state_dict(state["model"])
    return model.to(device).eval(), cfg
