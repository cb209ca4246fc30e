"""Fixed, seeded, stratified train/val/test splits that respect a dataset's own split files."""

from __future__ import annotations

import warnings

import numpy as np

from segtune.data.segmentation_data import SegmentationData

SPLITS = ("train", "val", "test")


def make_splits(data: SegmentationData, val_fraction: float, test_fraction: float,
                seed: int) -> dict[str, list[str]]:
    """Split ids so that every class present in >= 3 images appears in every split.

    A dataset's own train/val/test files are kept; a missing split is carved from train.
    An id listed in two of the dataset's splits is kept in the later (evaluation) split only.
    """
    own = {name: list(ids) for name, ids in data.splits.items()}
    if "train" not in own:
        listed = {i for ids in own.values() for i in ids}
        own["train"] = [i for i in data.names if i not in listed]
    listed = {i for ids in own.values() for i in ids}
    unlisted = [i for i in data.names if i not in listed]
    if unlisted:
        warnings.warn(f"{len(unlisted)} image(s) are in none of the dataset's split files and are left out, "
                      f"e.g. {unlisted[:3]}")
    _remove_overlaps(own)
    present = dict(zip(data.names, data.classes_present()))
    pool = own.get("train", [])
    wanted = {"val": val_fraction, "test": test_fraction}
    total = sum(len(v) for v in own.values())
    sizes = {s: max(1, round(total * f)) for s, f in wanted.items() if s not in own and f > 0}
    carved = _stratified_take(pool, present, sizes, seed)
    splits = {s: own.get(s, carved.get(s, [])) for s in ("val", "test")}
    splits["train"] = [i for i in pool if not any(i in carved.get(s, []) for s in carved)]
    return {s: sorted(splits[s]) for s in SPLITS}


def _remove_overlaps(own: dict[str, list[str]]) -> None:
    order = [s for s in ("test", "val", "train") if s in own]
    seen: set[str] = set()
    for split in order:
        dropped = [i for i in own[split] if i in seen]
        if dropped:
            warnings.warn(f"dataset split '{split}' shares {dropped} with a later split; kept them out of '{split}'")
        own[split] = [i for i in own[split] if i not in seen]
        seen.update(own[split])


def _stratified_take(pool: list[str], present: dict[str, set[int]], sizes: dict[str, int],
                     seed: int) -> dict[str, list[str]]:
    """Take `sizes[split]` ids out of `pool`: rarest classes first, one image each, then at random."""
    rng = np.random.default_rng(seed)
    remaining = [pool[i] for i in rng.permutation(len(pool))]
    taken: dict[str, list[str]] = {s: [] for s in sizes}
    if sum(sizes.values()) >= len(pool):
        raise ValueError(f"cannot carve {sizes} out of {len(pool)} training images; lower val_fraction/test_fraction")
    counts: dict[int, int] = {}
    for ids in present.values():
        for c in ids:
            counts[c] = counts.get(c, 0) + 1
    for cls in sorted(counts, key=lambda c: (counts[c], c)):
        holders = [i for i in remaining if cls in present[i]]
        for split in sizes:
            has_it = any(cls in present[i] for i in taken[split])
            if not has_it and len(taken[split]) < sizes[split] and len(holders) > 1:
                chosen = holders.pop(0)
                taken[split].append(chosen)
                remaining.remove(chosen)
    for split, size in sizes.items():
        while len(taken[split]) < size:
            taken[split].append(remaining.pop(0))
    return taken
