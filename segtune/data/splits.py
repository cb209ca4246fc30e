"""Fixed, seeded, stratified train/val/test splits that respect a dataset's own split files."""

from __future__ import annotations

import warnings

import numpy as np

from segtune.components import connected_components
from segtune.data.segmentation_data import SegmentationData

SPLITS = ("train", "val", "test")


def make_splits(data: SegmentationData, val_fraction: float, test_fraction: float,
                seed: int, groups: list[set[str]] | None = None) -> dict[str, list[str]]:
    """Split ids so that every class present in >= 3 images appears in every split.

    A dataset's own train/val/test files are kept; a missing split is carved from train.
    An id listed in two of the dataset's splits is kept in the later (evaluation) split only.
    `groups` (e.g. near-duplicate images) are carved as units: a group's training images all stay
    in train or all go to the same carved split; overlapping groups merge.
    A split left empty is refused (ValueError), except a test split that test_fraction 0 leaves out.
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
    carved = _stratified_take(pool, present, sizes, seed, groups or [])
    splits = {s: own.get(s, carved.get(s, [])) for s in ("val", "test")}
    splits["train"] = [i for i in pool if not any(i in carved.get(s, []) for s in carved)]
    for split in SPLITS:
        if not splits[split] and not (split == "test" and "test" not in own and test_fraction == 0):
            raise ValueError(_why_empty(split, data.splits, wanted, sizes, _units(pool, groups or [])))
    return {s: sorted(splits[s]) for s in SPLITS}


def _why_empty(split: str, files: dict, wanted: dict[str, float], sizes: dict[str, int], units: list[list[str]]) -> str:
    """Why `split` came out empty, and what to do about it."""
    empty = f"the {split} split is empty"
    if split in files:
        return (f"{empty}: the dataset's splits/{split}.txt lists no image left after exclude_file and the later "
                f"splits; list images in it, or delete it so {split} is carved from train")
    if split == "train":
        return (f"{empty}: the dataset's split files (less exclude_file) leave no image for training; "
                "list images in splits/train.txt or fewer in splits/val.txt and splits/test.txt")
    option = f"{split}_fraction"
    if wanted[split] == 0:
        return f"{empty}: {option} is 0 and the dataset has no splits/{split}.txt; raise {option} or add the file"
    groups = sorted((len(u) for u in units if len(u) > 1), reverse=True)
    return (f"{empty}: {option} {wanted[split]} asks for {sizes[split]} of {sum(map(len, units))} training images, "
            f"but near-duplicate groups of {', '.join(map(str, groups[:10]))} images each stay in one split and none "
            f"fits; leave duplicates out with an exclude_file (`segtune inspect DATA` writes one), give the dataset "
            f"its own splits/val.txt and splits/test.txt, or raise {option}")


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
                     seed: int, groups: list[set[str]]) -> dict[str, list[str]]:
    """Take `sizes[split]` ids out of `pool`: rarest classes first, one unit each, then at random.

    A unit is one id, or the pool's members of a group; a unit is taken whole and only where it fits.
    """
    rng = np.random.default_rng(seed)
    remaining = _units([pool[i] for i in rng.permutation(len(pool))], groups)
    taken: dict[str, list[str]] = {s: [] for s in sizes}
    if sizes and sum(sizes.values()) >= len(pool):
        raise ValueError(f"cannot carve {sizes} out of {len(pool)} training images; lower val_fraction/test_fraction")
    counts: dict[int, int] = {}
    for ids in present.values():
        for c in ids:
            counts[c] = counts.get(c, 0) + 1
    for cls in sorted(counts, key=lambda c: (counts[c], c)):
        holders = [u for u in remaining if any(cls in present[i] for i in u)]
        for split in sizes:
            has_it = any(cls in present[i] for i in taken[split])
            room = sizes[split] - len(taken[split])
            chosen = next((u for u in holders if len(u) <= room), None)
            if not has_it and chosen is not None and len(holders) > 1:
                holders.remove(chosen)
                taken[split].extend(chosen)
                remaining.remove(chosen)
    for split, size in sizes.items():
        while (chosen := next((u for u in remaining if len(u) <= size - len(taken[split])), None)) is not None:
            taken[split].extend(chosen)
            remaining.remove(chosen)
    return taken


def _units(ordered: list[str], groups: list[set[str]]) -> list[list[str]]:
    """`ordered` ids bundled by group (overlapping groups merged), each unit where its first id stood."""
    position = {image_id: n for n, image_id in enumerate(ordered)}
    links = []
    for group in groups:
        members = [position[i] for i in group if i in position]
        links += [(members[0], other) for other in members[1:]]
    return [[ordered[n] for n in unit] for unit in connected_components(len(ordered), links)]


def carve_folds(ids: list[str], present: dict[str, set[int]], folds: int, seed: int,
                groups: list[set[str]] | None = None) -> list[list[str]]:
    """`ids` dealt into `folds` seeded folds, each id in exactly one, for K-fold refits (nnU-Net's cross-validation).

    Units are carved as make_splits carves them (a group's ids, e.g. near-duplicates, share one fold). Units holding
    the rarest classes are dealt first, each to the fold with the fewest images of its rarest class, then the rest,
    larger units first, each to the smallest fold, so every fold sees the rare classes and sizes stay balanced.
    Refused (ValueError) when there are fewer units than folds: a fold would be empty.
    """
    rng = np.random.default_rng(seed)
    units = _units([ids[i] for i in rng.permutation(len(ids))], groups or [])
    if folds < 2 or folds > len(units):
        grouped = f" in {len(units)} units (near-duplicate groups stay in one fold)" if len(units) < len(ids) else ""
        raise ValueError(f"{folds} folds of {len(ids)} images{grouped}: use 2 to {len(units)} folds")
    images_with = {c: sum(c in present[i] for i in ids) for c in set().union(*(present[i] for i in ids))}

    def rarest(unit: list[str]):
        held = set().union(*(present[i] for i in unit))
        return min(held, key=lambda c: (images_with[c], c)) if held else None

    order = sorted(units, key=lambda u: (images_with[rarest(u)] if rarest(u) is not None else len(ids) + 1, -len(u)))
    dealt: list[list[str]] = [[] for _ in range(folds)]
    for unit in order:
        rare = rarest(unit)
        fold = min(range(folds), key=lambda f: (sum(rare in present[i] for i in dealt[f]), len(dealt[f]), f))
        dealt[fold].extend(unit)
    return [sorted(fold) for fold in dealt]
