"""Names shared by the trainable, the spaces, the scheduler, MLflow and ensembles: metrics, tags, losses.

Import these constants instead of spelling the strings, so a name cannot drift between stages.
"""

VAL_MIOU = "val_miou"
"""Mean IoU over the validation split from one confusion matrix; the search objective."""
VAL_LOSS = "val_loss"
TRAIN_LOSS = "train_loss"
VAL_PIXEL_ACCURACY = "val_pixel_accuracy"
VAL_IOU_PREFIX = "val_iou_"
"""Per-class IoU is reported as val_iou_<class name>."""
EPOCH = "epoch"
CHECKPOINT_FILE = "checkpoint.pt"
"""The file in each of a trial's Ray checkpoint folders: model, optimizer, epoch, history, trial config."""
VAL_PROBABILITIES_FILE = "val_probabilities.npz"
"""Beside it in the checkpoints of a trial's best epochs: float16 class probabilities on the validation images."""
BEST_VAL_MIOU = "best_val_miou"
"""Best val_miou over the epochs reported so far by one trial."""
LR = "lr"
LOSS_STAGE = "loss_stage"
"""0 during the cross-entropy warm-up, 1 once the trial's own loss is used."""
EARLY_STOPPED = "early_stopped"
"""1 on the epoch where the trial's own patience ran out."""
TRAIN_SCALE = "train_scale"
"""The scale an epoch trained and validated at: the trial's scale, times progressive_scale in its first rung."""
TRAIN_PIXELS = "train_pixels"
"""Pixels of training crops an epoch passed through the network: compute that does not depend on the machine."""

NODE_ID = "node_id"
"""The Ray node a trial's epoch ran on (reported with every epoch; on a cluster it shows where trials went)."""

ARCHITECTURES = ("Unet", "UnetPlusPlus", "FPN", "DeepLabV3Plus", "Segformer")
"""The smp architectures a trial accepts (trainables/config.py) and the generic space samples."""
LOSS_NAMES = ("cross_entropy", "weighted_cross_entropy", "per_image_weighted_cross_entropy", "focal", "dice",
              "tversky", "focal_tversky", "jaccard", "lovasz", "cross_entropy_dice")
"""Every loss the trainable builds (trainables/losses.py) and a space may sample."""
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
"""MLflow store of `segtune search` and `segtune ensemble` when none is given: a database in the working folder."""

OBJECTIVE = VAL_MIOU
OBJECTIVE_MODE = "max"

TAG_OUTCOME = "segtune.outcome"
"""Child-run tag: completed | stopped_early (by ASHA) | early_stopping (own patience) | failed | interrupted."""
TAG_TRIAL_ID = "segtune.trial_id"
TAG_SEARCH = "segtune.search"
TAG_ERROR = "segtune.error"
TAG_KIND = "segtune.kind"
"""What a child run that is not a search trial holds (e.g. "ensemble", or "refit" for a fold trial)."""
TAG_REFIT_RANK = "segtune.refit_rank"
"""A refit trial's config rank among those refitted (1 = the search's best; `segtune ensemble --refit-folds`)."""
TAG_REFIT_FOLD = "segtune.refit_fold"
"""The fold a refit trial held out (0 .. K-1), or "all" for a config refitted on all of train+val."""
TAG_REFIT_OF = "segtune.refit_of"
"""The search trial whose config a refit trial retrains."""


def class_iou_name(class_name: str) -> str:
    return f"{VAL_IOU_PREFIX}{class_name}"


def outcome_of(epochs: int, max_epochs: int, early_stopped: bool = False, failed: bool = False) -> str:
    """How a trial ended, as tagged in MLflow and shown in the leaderboard."""
    if failed:
        return "failed"
    if early_stopped:
        return "early_stopping"
    return "completed" if epochs >= max_epochs else "stopped_early"
