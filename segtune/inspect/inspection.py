"""Inspect a dataset: one pass over the decoded images, then every finding as one plain dict.

    report = inspect_dataset(load_dataset("DATA"), depth=5, crop=(256, 256))
"""

from __future__ import annotations

import warnings

import numpy as np

from segtune.class_weights import WEIGHTING_SCHEMES, class_weights
from segtune.data import SegmentationData, make_splits
from segtune.inspect.duplicates import (DEFAULT_HASH_THRESHOLD, MIN_CORRELATION, hash_matches, identical_mask_groups,
                                        listed_twice, near_duplicate_groups, propose_exclusions, split_leakage,
                                        unconfirmed_matches)
from segtune.inspect.fingerprint import data_fingerprint
from segtune.inspect.geometry import depth_fit
from segtune.inspect.hashing import fingerprint
from segtune.inspect.statistics import (ImageTable, class_shares, find_outliers, images_per_class, measure_images,
                                        rare_classes)
from segtune.tiling import DEFAULT_OVERLAP, network_tile, tiling_plans

OUTLIER_Z = 3.5
"""Robust z-score beyond which an image's statistic counts as an outlier (Iglewicz & Hoaglin)."""
EXCLUDE_Z_FACTOR = 2.0
"""A grey-level outlier is proposed for exclusion only beyond EXCLUDE_Z_FACTOR * outlier_z."""
DEFAULT_CROP = (256, 256)
"""Training crop (H, W) the tiling plan is drawn for when --crop is not given."""
CARVE = {"val_fraction": 0.15, "test_fraction": 0.15, "seed": 0}
"""How splits missing from the dataset are carved for the per-split report (segtune search's defaults)."""


def inspect_dataset(data: SegmentationData, *, depth: int = 5, crop=DEFAULT_CROP,
                    hash_threshold: int = DEFAULT_HASH_THRESHOLD, min_correlation: float = MIN_CORRELATION,
                    outlier_z: float = OUTLIER_Z) -> dict:
    """Everything the report says about `data`, as a JSON-ready dict."""
    table = measure_images(data)
    hashes = dict(zip(table.names, table.image_hashes))
    matches = hash_matches(table.image_hashes, hash_threshold, table.thumbnails)
    near = near_duplicate_groups(table.names, matches, min_correlation)
    masks = identical_mask_groups(table.names, table.mask_digests, table.class_counts)
    outliers = find_outliers(table, outlier_z)
    blank = [n for n, labelled in zip(table.names, table.class_counts.sum(1)) if labelled == 0]
    splits, split_notes = _splits(data, [set(g["ids"]) for g in near])
    return {
        "dataset": data.source, "images": len(table.names), "classes": list(data.classes),
        "ignore_index": data.ignore_index,
        "sizes": [{"size": f["size"], "images": f["images"]} for f in depth_fit(table.sizes, depth)],
        "channels": {str(c): table.channels.count(c) for c in sorted(set(table.channels))},
        "grey_level": {"mean": round(float(table.mean.mean()), 2), "std": round(float(table.std.mean()), 2)},
        "unlabelled_pixels": int(table.unlabelled.sum()),
        "class_table": _class_table(table, data.classes),
        "rare_classes": [data.classes[c] for c in rare_classes(class_shares(table.class_counts.sum(0)),
                                                               (table.class_counts > 0).sum(0).tolist())],
        "split_files": {s: len(ids) for s, ids in data.splits.items()},
        "splits": _split_shares(table, splits), "split_notes": split_notes,
        "class_weights": suggest_class_weights(table.class_counts.sum(0)),
        "depth": {"depth": depth, "multiple": 2 ** depth, "sizes": depth_fit(table.sizes, depth)},
        "tiling": {"crop": list(crop), "tile": network_tile(crop), "overlap": DEFAULT_OVERLAP,
                   "plans": tiling_plans(table.sizes, network_tile(crop), DEFAULT_OVERLAP)},
        "near_duplicates": {"threshold": hash_threshold, "min_correlation": min_correlation, "groups": near,
                            "unconfirmed": unconfirmed_matches(table.names, matches, min_correlation)},
        "identical_masks": masks,
        "outliers": {"z_threshold": outlier_z, "exclude_z": EXCLUDE_Z_FACTOR * outlier_z, "images": outliers},
        "blank_masks": blank,
        "leakage": {"listed_twice": listed_twice(data.splits),
                    "near_duplicates": split_leakage([g["ids"] for g in near], data.splits),
                    "identical_masks": split_leakage([g["ids"] for g in masks], data.splits)},
        "exclusions": propose_exclusions(near, masks, outliers, hashes, hash_threshold, EXCLUDE_Z_FACTOR * outlier_z,
                                         blank),
        "fingerprint": data_fingerprint(data),
    }


def duplicate_groups(data: SegmentationData, threshold: int = DEFAULT_HASH_THRESHOLD,
                     min_correlation: float = MIN_CORRELATION) -> list[set[str]]:
    """Sets of near-duplicate image ids, for make_splits(groups=...) to keep each in one split."""
    prints = [fingerprint(image) for image in data.images]
    matches = hash_matches([bits for bits, _ in prints], threshold, [thumbnail for _, thumbnail in prints])
    return [set(group["ids"]) for group in near_duplicate_groups(data.names, matches, min_correlation)]


def suggest_class_weights(pixel_counts) -> dict[str, list[float]]:
    """Each weighting scheme's weights, as a trial with that `class_weighting` would use them (default cap)."""
    return {scheme: class_weights(pixel_counts, scheme) for scheme in WEIGHTING_SCHEMES if scheme != "none"}


def _class_table(table: ImageTable, classes) -> list[dict]:
    totals = table.class_counts.sum(0)
    shares = class_shares(totals)
    holders = images_per_class(table)
    return [{"index": c, "name": name, "pixels": int(totals[c]), "share": round(shares[c], 6),
             "images": len(holders[c]), "image_ids": holders[c]} for c, name in enumerate(classes)]


def _splits(data: SegmentationData, groups: list[set[str]]) -> tuple[dict[str, list[str]], list[str]]:
    """The splits segtune search would use with its defaults, and make_splits' warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            splits = make_splits(data, CARVE["val_fraction"], CARVE["test_fraction"], CARVE["seed"], groups)
        except ValueError as error:
            return {}, [str(error)]
    return splits, [str(w.message) for w in caught]


def _split_shares(table: ImageTable, splits: dict[str, list[str]]) -> dict[str, dict]:
    row = {name: r for r, name in enumerate(table.names)}
    summary = {}
    for split, ids in splits.items():
        counts = table.class_counts[[row[i] for i in ids]].sum(0) if ids else np.zeros(table.class_counts.shape[1])
        present = (table.class_counts[[row[i] for i in ids]] > 0).sum(0) if ids else counts
        summary[split] = {"images": len(ids), "shares": [round(s, 6) for s in class_shares(counts)],
                          "images_per_class": [int(n) for n in present]}
    return summary
