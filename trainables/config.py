"""TrialConfig: everything one trial needs, built from Ray's flat dict on the trainable's first line."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from trainables.losses import LOSS_NAMES

ARCHITECTURES = ("Unet", "UnetPlusPlus", "FPN", "DeepLabV3Plus", "Segformer", "Linknet", "PSPNet", "MAnet", "PAN")
OPTIMIZERS = ("adam", "adamw", "nadam", "sgd")


@dataclass(frozen=True)
class TrialConfig:
    # model
    architecture: str = "Unet"
    """smp architecture name, e.g. Unet, FPN, DeepLabV3Plus."""
    encoder: str = "tu-mobilenetv3_small_050"
    """smp encoder name; `tu-` names are timm encoders."""
    encoder_depth: int = 3
    """Encoder stages used (3-5); decoder channels are derived from it."""
    encoder_weights: str | None = None
    """None (random init, offline) or a path to a local state-dict file for the encoder."""
    in_channels: int = 3
    """Image channels: 1 grayscale, 3 RGB."""
    num_classes: int = 2
    """Number of classes the head predicts."""
    # optimisation
    loss: str = "cross_entropy"
    """Loss name from trainables.losses."""
    class_weights: tuple[float, ...] | None = None
    """Per-class weights for weighted losses, from the training split's pixel counts."""
    optimizer: str = "adamw"
    """adam | adamw | nadam | sgd (momentum 0.9)."""
    lr: float = 1e-3
    """Learning rate."""
    weight_decay: float = 1e-4
    """Decoupled (adamw) or L2 weight decay."""
    batch_size: int = 8
    """Training batch size."""
    max_epochs: int = 4
    """Epochs a trial trains unless ASHA stops it first."""
    steps_per_epoch: int | None = None
    """Batches per epoch; None for one pass over the training split."""
    # data
    crop: tuple[int, int] = (64, 64)
    """Training crop (H, W)."""
    ignore_index: int = 255
    """Mask value left out of losses and metrics."""
    exclude_from_mean: tuple[int, ...] = ()
    """Class indices reported per class but left out of the mIoU mean."""
    class_names: tuple[str, ...] = ()
    """Names of the classes, for per-class metric names."""
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    """Per-channel normalisation mean (0..1 scale), from the training split."""
    std: tuple[float, ...] = (0.25, 0.25, 0.25)
    """Per-channel normalisation std (0..1 scale)."""
    num_workers: int = 0
    """DataLoader worker processes; keep equal to the trial's CPUs minus one or 0."""
    seed: int = 0
    """Seed for weights, crops and batch order."""

    def __post_init__(self):
        def need(ok: bool, message: str):
            if not ok:
                raise ValueError(f"TrialConfig: {message}")
        need(self.architecture in ARCHITECTURES, f"architecture {self.architecture!r} not in {ARCHITECTURES}")
        need(3 <= self.encoder_depth <= 5, f"encoder_depth {self.encoder_depth} must be 3, 4 or 5")
        need(self.in_channels in (1, 3), f"in_channels {self.in_channels} must be 1 or 3")
        need(self.num_classes >= 2, f"num_classes {self.num_classes} must be >= 2")
        need(self.loss in LOSS_NAMES, f"loss {self.loss!r} not in {LOSS_NAMES}")
        need(self.optimizer in OPTIMIZERS, f"optimizer {self.optimizer!r} not in {OPTIMIZERS}")
        need(self.lr > 0 and self.weight_decay >= 0, "lr must be > 0 and weight_decay >= 0")
        need(self.batch_size >= 1 and self.max_epochs >= 1, "batch_size and max_epochs must be >= 1")
        need(len(self.crop) == 2 and all(c % 2 ** self.encoder_depth == 0 for c in self.crop),
             f"crop {self.crop} must be (H, W) divisible by 2**encoder_depth = {2 ** self.encoder_depth}")
        need(len(self.mean) == len(self.std) == self.in_channels, "mean/std need one value per input channel")
        need(not self.class_names or len(self.class_names) == self.num_classes, "class_names needs num_classes names")

    @classmethod
    def from_dict(cls, values: dict) -> "TrialConfig":
        """Build from Ray's flat dict; an unknown key is an error, never silently ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise KeyError(f"unknown trial parameter(s) {unknown}; valid: {sorted(known)}")
        tuples = {"crop", "exclude_from_mean", "class_names", "mean", "std", "class_weights"}
        return cls(**{k: tuple(v) if k in tuples and v is not None else v for k, v in values.items()})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
