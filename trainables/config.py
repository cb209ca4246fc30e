"""TrialConfig: everything one trial needs, built from Ray's flat dict on the trainable's first line."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from segtune.class_weights import CLASS_WEIGHT_CAP, WEIGHTING_SCHEMES
from segtune.names import ARCHITECTURES, LOSS_NAMES
from segtune.weights import is_weights_name

OPTIMIZERS = ("adam", "adamw", "nadam", "sgd")
SCHEDULERS = ("none", "plateau", "exponential", "cosine")
INTERPOLATIONS = ("nearest", "bilinear")
_TUPLES = {"crop", "exclude_from_mean", "class_names", "mean", "std", "class_pixel_counts"}


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
    """None (random init), a weights name read from weights_cache (imagenet, a timm tag), or a local state-dict file."""
    pretrained: bool = True
    """Start the encoder from encoder_weights (searched with space_overrides pretrained: [true, false]); false: random."""
    weights_cache: str | None = None
    """Folder or s3:// URI of the weights the search fetched by name (segtune/weights.py); None for a file or no weights."""
    encoder_weights_sha256: str | None = None
    """SHA-256 of the cached weights file the encoder started from, recorded when the trial starts."""
    decoder_interpolation: str = "nearest"
    """Decoder upsampling, nearest or bilinear (Unet, UnetPlusPlus, FPN)."""
    decoder_attention: bool = False
    """scSE attention in the decoder blocks (Unet, UnetPlusPlus)."""
    head_dropout: float = 0.0
    """Dropout2d probability before the segmentation head."""
    in_channels: int = 3
    """Image channels: 1 grayscale, 3 RGB."""
    num_classes: int = 2
    """Number of classes the head predicts."""
    # loss
    loss: str = "cross_entropy"
    """Loss name from trainables.losses (after any warm-up stage)."""
    tversky_alpha: float = 0.7
    """Tversky weight of false negatives (Abraham & Khan convention)."""
    tversky_beta: float = 0.3
    """Tversky weight of false positives."""
    focal_gamma: float = 2.0
    """Focal exponent: (1 - p)^gamma for focal, (1 - TI)^gamma for focal Tversky."""
    dice_weight: float = 1.0
    """Weight of the Dice term in cross_entropy_dice."""
    warmup_epochs: int = 0
    """Epochs of plain cross-entropy at warmup_lr before switching to `loss` at `lr`; 0 for none."""
    warmup_lr: float = 1e-3
    """Learning rate of the cross-entropy warm-up stage."""
    # class imbalance
    class_weighting: str = "none"
    """Class weights for weighted losses: none | inverse_frequency | log_inverse_frequency | median_frequency | effective_number."""
    class_weight_cap: float = CLASS_WEIGHT_CAP
    """Upper bound of any class weight (also of per-image weights)."""
    class_pixel_counts: tuple[int, ...] | None = None
    """Training-split pixel count per class, from which class weights are derived."""
    oversample_rare: float = 1.0
    """Images that contain the rarest class are drawn this many times more often."""
    copy_paste: float = 0.0
    """Probability of pasting a rare-class region from another training image into a crop."""
    # optimisation
    optimizer: str = "adamw"
    """adam | adamw | nadam | sgd (momentum 0.9)."""
    lr: float = 1e-3
    """Learning rate."""
    weight_decay: float = 1e-4
    """Decoupled (adamw) or L2 weight decay."""
    scheduler: str = "none"
    """none | plateau (on val mIoU) | exponential | cosine (with scheduler_warmup_epochs of linear warm-up)."""
    scheduler_warmup_epochs: int = 0
    """Linear lr warm-up epochs of the cosine schedule."""
    grad_clip: float | None = None
    """Clip the gradient norm to this value; None for no clipping."""
    batch_size: int = 8
    """Training batch size."""
    max_epochs: int = 4
    """Epochs a trial trains unless ASHA or early stopping stops it first."""
    early_stop_patience: int | None = None
    """Stop after this many epochs without a val mIoU gain of early_stop_min_delta; None: only ASHA stops."""
    early_stop_min_delta: float = 0.0
    """Smallest val mIoU gain that resets the patience."""
    steps_per_epoch: int | None = None
    """Batches per epoch; None for one pass over the training split."""
    # augmentation (training crops only; image and mask together)
    flip: bool = False
    """Random horizontal and vertical flips."""
    rotate90: bool = False
    """Random 90-degree rotations (180 degrees only on non-square crops, which must keep their shape)."""
    shift_scale_rotate: float = 0.0
    """Strength 0-1 of random shift (x 0.1), scale (x 0.2) and rotation (x 30 degrees); 0 off."""
    brightness_contrast: float = 0.0
    """Random brightness and contrast change limit; 0 off."""
    gamma: float = 0.0
    """Random gamma change limit (0.2 -> gamma 0.8-1.2); 0 off."""
    blur_noise: float = 0.0
    """Probability of Gaussian blur or Gaussian noise; 0 off."""
    distortion: float = 0.0
    """Probability of an elastic or grid distortion; 0 off."""
    cutmix: float = 0.0
    """Probability of pasting a random box of another training crop (image and mask) into a crop."""
    # data
    crop: tuple[int, int] = (64, 64)
    """Training crop (H, W)."""
    scale: float = 1.0
    """Share (0, 1] of the size images are read at that the trial trains and predicts at; scored at the read size."""
    progressive_epochs: int = 0
    """First epochs (ASHA's first rung) trained at scale * progressive_scale on crops shrunk alike; 0 for none."""
    progressive_scale: float = 0.5
    """Factor in (0, 1) on scale and crop during the progressive_epochs."""
    ignore_index: int = 255
    """Mask value left out of losses and metrics."""
    exclude_from_mean: tuple[int, ...] = ()
    """Class indices reported per class but left out of the mIoU mean."""
    class_names: tuple[str, ...] = ()
    """Names of the classes, for per-class metric names."""
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    """Per-channel normalisation mean (0..1 scale), from the training split, or the named encoder_weights' own."""
    std: tuple[float, ...] = (0.25, 0.25, 0.25)
    """Per-channel normalisation std (0..1 scale)."""
    num_workers: int = 0
    """DataLoader worker processes; keep equal to the trial's CPUs minus one or 0."""
    # compute (used on a GPU; a CPU trial trains in float32, NCHW)
    mixed_precision: bool = True
    """On a GPU, autocast to bf16 where supported, else fp16 with loss scaling; False trains in float32."""
    channels_last: bool = True
    """On a GPU, channels-last (NHWC) memory format for the model and batches."""
    gpu_fraction: float = 1.0
    """Share of the GPU this trial may use, also as a cap on its GPU memory (gpus_per_trial below 1)."""
    seed: int = 0
    """Seed for weights, crops, augmentation and batch order."""
    # outputs
    keep_val_probabilities: bool = True
    """Keep the best epoch's float16 class probabilities on the validation images beside its checkpoint."""

    def __post_init__(self):
        def need(ok: bool, message: str):
            if not ok:
                raise ValueError(f"TrialConfig: {message}")
        need(self.architecture in ARCHITECTURES, f"architecture {self.architecture!r} not in {ARCHITECTURES}")
        need(3 <= self.encoder_depth <= 5, f"encoder_depth {self.encoder_depth} must be 3, 4 or 5")
        need(isinstance(self.pretrained, bool), f"pretrained {self.pretrained!r} must be true or false")
        need(self.weights_cache is not None or not self.encoder_weights or not is_weights_name(self.encoder_weights),
             f"encoder_weights {self.encoder_weights!r} is a weights name and needs weights_cache, the folder "
             "`segtune weights fetch` filled")
        need(self.decoder_interpolation in INTERPOLATIONS, f"decoder_interpolation must be one of {INTERPOLATIONS}")
        need(0 <= self.head_dropout < 1, f"head_dropout {self.head_dropout} must be in [0, 1)")
        need(self.in_channels in (1, 3), f"in_channels {self.in_channels} must be 1 or 3")
        need(self.num_classes >= 2, f"num_classes {self.num_classes} must be >= 2")
        need(self.loss in LOSS_NAMES, f"loss {self.loss!r} not in {LOSS_NAMES}")
        need(0 <= self.warmup_epochs < self.max_epochs or self.warmup_epochs == 0,
             f"warmup_epochs {self.warmup_epochs} must be below max_epochs {self.max_epochs}")
        need(self.class_weighting in WEIGHTING_SCHEMES, f"class_weighting {self.class_weighting!r} not in {WEIGHTING_SCHEMES}")
        need(self.class_weight_cap >= 1, "class_weight_cap must be >= 1")
        need(self.oversample_rare >= 1, "oversample_rare must be >= 1")
        need(self.optimizer in OPTIMIZERS, f"optimizer {self.optimizer!r} not in {OPTIMIZERS}")
        need(self.scheduler in SCHEDULERS, f"scheduler {self.scheduler!r} not in {SCHEDULERS}")
        need(self.lr > 0 and self.warmup_lr > 0 and self.weight_decay >= 0, "lr, warmup_lr must be > 0 and weight_decay >= 0")
        need(isinstance(self.keep_val_probabilities, bool),
             f"keep_val_probabilities {self.keep_val_probabilities!r} must be true or false")
        need(0 < self.gpu_fraction <= 1, f"gpu_fraction {self.gpu_fraction} must be in (0, 1]")
        need(self.batch_size >= 1 and self.max_epochs >= 1, "batch_size and max_epochs must be >= 1")
        need(self.early_stop_patience is None or self.early_stop_patience >= 1, "early_stop_patience must be >= 1 or None")
        need(self.steps_per_epoch is None or self.steps_per_epoch >= 1, "steps_per_epoch must be >= 1 or None")
        for name in ("copy_paste", "shift_scale_rotate", "brightness_contrast", "gamma", "blur_noise", "distortion", "cutmix"):
            need(0 <= getattr(self, name) <= 1, f"{name} {getattr(self, name)} must be in [0, 1]")
        need(len(self.crop) == 2 and all(c % 2 ** self.encoder_depth == 0 for c in self.crop),
             f"crop {self.crop} must be (H, W) divisible by 2**encoder_depth = {2 ** self.encoder_depth}")
        need(0 < self.scale <= 1, f"scale {self.scale} must be in (0, 1]: a share of the size images are read at "
             "(enlarge them with the search's resize)")
        need(0 < self.progressive_scale < 1, f"progressive_scale {self.progressive_scale} must be in (0, 1)")
        need(self.progressive_epochs == 0 or 0 < self.progressive_epochs < self.max_epochs,
             f"progressive_epochs {self.progressive_epochs} must be 0 or below max_epochs {self.max_epochs}")
        need(len(self.mean) == len(self.std) == self.in_channels, "mean/std need one value per input channel")
        need(not self.class_names or len(self.class_names) == self.num_classes, "class_names needs num_classes names")
        need(self.class_pixel_counts is None or len(self.class_pixel_counts) == self.num_classes,
             "class_pixel_counts needs one count per class")
        need(self.class_weighting == "none" or self.class_pixel_counts is not None,
             f"class_weighting {self.class_weighting!r} needs class_pixel_counts")

    @classmethod
    def from_dict(cls, values: dict) -> "TrialConfig":
        """Build from Ray's flat dict; an unknown key is an error, never silently ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        # `field@branch` is the same field sampled from another choice set in one branch of a space
        values = {k.split("@", 1)[0]: v for k, v in values.items()}
        unknown = sorted(set(values) - known)
        if unknown:
            raise KeyError(f"unknown trial parameter(s) {unknown}; valid: {sorted(known)}")
        return cls(**{k: tuple(v) if k in _TUPLES and v is not None else v for k, v in values.items()})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
