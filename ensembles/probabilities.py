"""Members' class probabilities on held-out images, float16 on disk, read back one image at a time.

Layout: <folder>/<trial_id>/<image_id>.npy, each (K, H, W) float16. A member's maps are written once
(a rerun reuses them); memory holds one model and one image at a time, never all maps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ensembles.members import Member
from segtune.data import SegmentationData
from segtune.data.dataset import to_tensor
from trainables import load_model, predict_logits


class ProbabilityStore:
    def __init__(self, folder: Path, trial_ids: list[str]):
        self.folder, self.trial_ids = Path(folder), list(trial_ids)

    def file(self, trial_id: str, image_id: str) -> Path:
        return self.folder / trial_id / f"{image_id}.npy"

    def stack(self, image_id: str) -> np.ndarray:
        """(M, K, H, W) float32 for one image, members in store order."""
        return np.stack([np.load(self.file(t, image_id), mmap_mode="r") for t in self.trial_ids]).astype(np.float32)


@torch.no_grad()
def write_probabilities(members: list[Member], data: SegmentationData, image_ids: list[str], folder: Path,
                        log=print) -> ProbabilityStore:
    store = ProbabilityStore(folder, [m.trial_id for m in members])
    index = data.index_of()
    for member in members:
        missing = [i for i in image_ids if not store.file(member.trial_id, i).exists()]
        if not missing:
            continue
        model, cfg = load_model(member.checkpoint)
        (store.folder / member.trial_id).mkdir(parents=True, exist_ok=True)
        log(f"  {member.trial_id}: probabilities on {len(missing)} image(s)")
        for image_id in missing:
            logits = predict_logits(model, to_tensor(data.images[index[image_id]], cfg.mean, cfg.std)[None])
            probs = torch.softmax(logits.float(), 1)[0].numpy().astype(np.float16)
            target = store.file(member.trial_id, image_id)
            np.save(target.with_suffix(".tmp.npy"), probs)
            target.with_suffix(".tmp.npy").replace(target)  # a crash never leaves a half-written map
    return store
