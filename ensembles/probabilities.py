"""Members' class probabilities on held-out images, float16 on disk, read back one image at a time.

Layout: <folder>/<trial_id>/<image_id>.npy, each (K, H, W) float16. A member's maps are written once
(a rerun reuses them); memory holds one member's networks and one image at a time, never all maps. Validation maps
a trial kept (keep_val_probabilities) are copied in rather than computed again; the ensemble computes
the rest, test maps always, from the member's checkpoint in float32 on the CPU. A member refitted on K folds
(`--refit-folds`) stores its fold models' out-of-fold maps on train and validation images, each image's from
the fold model that did not train on it, and on test images the mean of its fold models' probabilities and, in a
folder of their own (<folds folder>/<fold>/<trial_id>/<image_id>.npy, read by fold_stores), each fold model's, which a
stacker is scored on fold by fold (combine.PerFold).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ensembles.members import Member
from segtune.data import SegmentationData
from trainables import load_model, read_val_probabilities, reference_logits


class ProbabilityStore:
    def __init__(self, folder: Path, trial_ids: list[str]):
        self.folder, self.trial_ids = Path(folder), list(trial_ids)

    def file(self, trial_id: str, image_id: str) -> Path:
        return self.folder / trial_id / f"{image_id}.npy"

    def stack(self, image_id: str) -> np.ndarray:
        """(M, K, H, W) float32 for one image, members in store order."""
        return np.stack([np.load(self.file(t, image_id), mmap_mode="r") for t in self.trial_ids]).astype(np.float32)

    def pixels(self, image_id: str, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(N, M, K) float32 at the given pixels of one image: one member's map read at a time, not all of them."""
        return np.stack([np.load(self.file(t, image_id), mmap_mode="r")[:, rows, cols].T for t in self.trial_ids],
                        1).astype(np.float32)

    def subset(self, trial_ids: list[str]) -> "ProbabilityStore":
        """The same maps, for these members in this order."""
        return ProbabilityStore(self.folder, trial_ids)


def write_probabilities(members: list[Member], data: SegmentationData, image_ids: list[str], folder: Path,
                        log=print) -> ProbabilityStore:
    for member in members:
        write_averaged_probabilities(member.trial_id, [member.checkpoint], data, image_ids, folder, log)
    return ProbabilityStore(folder, [m.trial_id for m in members])


@torch.no_grad()
def write_averaged_probabilities(trial_id: str, checkpoints: list[Path], data: SegmentationData, image_ids: list[str],
                                 folder: Path, log=print, folds_folder: Path | None = None) -> None:
    """Store, as member `trial_id`'s maps, the mean of the class probabilities of the networks in `checkpoints` (one
    network: its own; a config's fold models: their average, as the exported FoldAverage computes it), averaged in
    float32 and written as float16; with `folds_folder`, each network's own maps too, network n's in fold_stores'
    store n. Images whose maps are all stored are skipped."""
    stores = [ProbabilityStore(folder, [trial_id])] + (fold_stores(folds_folder, [trial_id], len(checkpoints))
                                                       if folds_folder is not None else [])
    missing = [i for i in image_ids if not all(store.file(trial_id, i).exists() for store in stores)]
    if not missing:
        return
    models = [load_model(checkpoint) for checkpoint in checkpoints]
    for store in stores:
        (store.folder / trial_id).mkdir(parents=True, exist_ok=True)
    index = data.index_of()
    log(f"  {trial_id}: probabilities on {len(missing)} image(s)" + (f", the mean of {len(models)} networks"
                                                                     if len(models) > 1 else "")
        + (" and each network's own" if len(stores) > 1 else ""))
    for image_id in missing:
        image = data.images[index[image_id]]
        # each at its scale, at the image's size
        probs = torch.stack([torch.softmax(reference_logits(model, image, cfg).float(), 1)[0] for model, cfg in models])
        for store, maps in zip(stores, [probs.mean(0), *probs]):
            _save_map(store.file(trial_id, image_id), maps.numpy().astype(np.float16))


def fold_stores(folds_folder: Path, trial_ids: list[str], folds: int) -> list[ProbabilityStore]:
    """One store a fold model: store f holds each member's fold-f network's maps (write_averaged_probabilities with
    folds_folder), members in `trial_ids` order."""
    return [ProbabilityStore(Path(folds_folder) / str(fold), trial_ids) for fold in range(folds)]


def _save_map(target: Path, probs: np.ndarray) -> None:
    if target.exists():  # written by an earlier call from the same networks
        return
    np.save(target.with_suffix(".tmp.npy"), probs)
    target.with_suffix(".tmp.npy").replace(target)  # a crash never leaves a half-written map


def import_val_probabilities(members: list[Member], shapes: dict[str, tuple[int, int]], folder: Path,
                             log=print) -> list[Member]:
    """Copy the validation maps each member kept into the store; the members whose maps cover every image of
    `shapes` (validation image id -> (H, W)) at its size, in order. A member with other maps is left out, named."""
    store, usable = ProbabilityStore(folder, []), []
    for member in members:
        if member.val_probabilities is None:
            continue
        if all(store.file(member.trial_id, i).exists() for i in shapes):
            usable.append(member)
            continue
        kept = read_val_probabilities(member.val_probabilities)
        wrong = [i for i, shape in shapes.items() if i not in kept or kept[i].shape[1:] != tuple(shape)]
        if wrong:
            log(f"  {member.trial_id}: its kept validation maps do not match the images {wrong[:3]}; left out")
            continue
        (store.folder / member.trial_id).mkdir(parents=True, exist_ok=True)
        for image_id in shapes:
            np.save(store.file(member.trial_id, image_id), kept[image_id])
        usable.append(member)
    return usable
