"""A trial's class probabilities on the validation images at its best epoch, kept beside its checkpoint.

`segtune ensemble --select library` chooses members among every trial from these maps, without
running any model again. evaluate() collects them in its validation pass (no second pass); each
epoch whose val mIoU matches or beats the trial's best so far puts them
in its checkpoint state (key VAL_PROBABILITIES); the trainable writes them as a separate file in that
checkpoint's folder (names.VAL_PROBABILITIES_FILE), so loading a model never reads them. The best
checkpoint Ray keeps is always such an epoch, so it always has them.

Size: one float16 (K, H, W) map per validation image, in at most the 2 checkpoints Ray keeps per
trial: 2 x images x K x H x W x 2 bytes (cwfid as crop_weed.yaml reads it, 3 classes at 242x324 and
9 validation images: 0.47 MB an image, 4.2 MB a checkpoint, 8.5 MB a trial at most).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from segtune.names import VAL_PROBABILITIES_FILE

VAL_PROBABILITIES = "val_probabilities"
"""Checkpoint-state key: {"ids": validation image ids, "maps": float16 (K, H, W) tensors in that order}."""


def best_epoch_probabilities(maps: list[torch.Tensor] | None, ids: list[str], history: list[float]) -> dict | None:
    """What to keep with this epoch's checkpoint: the maps evaluate() collected (None when the option is off),
    only when the epoch matches the trial's best val mIoU."""
    if maps is None or history[-1] < max(history):
        return None
    return {"ids": list(ids), "maps": maps}


def write_val_probabilities(kept: dict, folder: Path) -> Path:
    """One uncompressed .npz in a checkpoint folder: `ids`, then map0, map1, ... in that order."""
    path = Path(folder) / VAL_PROBABILITIES_FILE
    np.savez(path, ids=np.array(kept["ids"], dtype=str),
             **{f"map{n}": m.numpy() for n, m in enumerate(kept["maps"])})
    return path


def read_val_probabilities(path: Path) -> dict[str, np.ndarray]:
    """Image id -> float16 (K, H, W) map, from a file write_val_probabilities wrote."""
    with np.load(path) as archive:
        return {str(image_id): archive[f"map{n}"] for n, image_id in enumerate(archive["ids"])}
