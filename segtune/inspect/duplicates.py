"""Near-duplicate images, images sharing one mask, duplicates across splits, and what to exclude (pure).

    matches = hash_matches(hashes, threshold=48, thumbnails=thumbnails)  # (i, j, distance, correlation)
    groups = near_duplicate_groups(names, matches, min_correlation=0.6)
    exclusions = propose_exclusions(groups, mask_groups, outliers, hashes_by_id, threshold=48, exclude_z=7.0)
"""

from __future__ import annotations

import numpy as np

from segtune.components import connected_components
from segtune.inspect.hashing import HASH_BITS, close_pairs, hamming

FLAT_STD = 2.0
"""Grey-level standard deviation below which a picture is near-constant (blank, all white, all black)."""
DEFAULT_HASH_THRESHOLD = 48
"""Hamming distance (of 256 bits) at or below which two images are candidate near-duplicates.

Measured on ../shared/datasets: frames of one CamVid street scene a second apart lie 30-50 apart;
different scenes >= 80, adjacent ISBI membrane slices >= 58, CWFID field photos >= 98. Photos that
share one background (the same soil, one lamp) lie as close with different plants on them, so a
match is only confirmed by MIN_CORRELATION.
"""
MIN_CORRELATION = 0.6
"""Correlation of two images' departures from the dataset's mean picture from which a hash match counts.

What all images share (soil, light, a street's layout) is taken out, so what is left must agree: on
CamVid every hash match within 48 bits correlates >= 0.75 (median 0.96); different plants on one soil
texture (tests/fakes.py plants_on_one_soil) <= 0.44, a noisy brightened copy 0.76; CWFID's closest
different photos (98-104 bits) <= 0.22. Figures: bench/near_duplicates.py.
"""
SAME_GREY = 0.01
"""RMS grey-level difference below which two thumbnails are one picture (both may equal the mean picture).

Small: different plants about as bright as their soil differ by only 0.8-1.0 grey levels at 32 x 32."""


def hash_matches(hashes, threshold: int, thumbnails=None) -> list[tuple[int, int, int, float]]:
    """Every pair (i, j, distance, correlation) within `threshold` bits.

    `correlation` is that of the two images' (32, 32) grey thumbnails less the dataset's mean thumbnail
    and less their own mean (a brightness change is no difference); 1.0 for one picture (within SAME_GREY)
    and for every pair without thumbnails or with fewer than 3 images (two images' departures
    from their mean are opposite by construction).
    """
    pairs = close_pairs(hashes, threshold)
    if thumbnails is None or len(thumbnails) < 3:
        return [(i, j, d, 1.0) for i, j, d in pairs]
    flat = np.asarray(thumbnails, dtype=np.float64).reshape(len(thumbnails), -1)
    departure = flat - flat.mean(0)
    departure -= departure.mean(1, keepdims=True)
    norm = np.linalg.norm(departure, axis=1)
    matches = []
    for i, j, d in pairs:
        same = np.sqrt(np.mean((departure[i] - departure[j]) ** 2)) < SAME_GREY
        correlation = 1.0 if same else float(departure[i] @ departure[j] / max(norm[i] * norm[j], 1e-12))
        matches.append((i, j, d, round(correlation, 3)))
    return matches


def near_duplicate_groups(names: list[str], matches, min_correlation: float = MIN_CORRELATION) -> list[dict]:
    """Images linked by chains of confirmed hash matches (correlation >= min_correlation), with the links."""
    pairs = [m for m in matches if m[3] >= min_correlation]
    groups = []
    for members in connected_components(len(names), pairs, min_size=2):
        inside = set(members)
        links = [(names[i], names[j], d, c) for i, j, d, c in pairs if i in inside]
        groups.append({"ids": [names[i] for i in members], "pairs": links,
                       "max_distance": max(link[2] for link in links)})
    return groups


def unconfirmed_matches(names: list[str], matches, min_correlation: float = MIN_CORRELATION) -> list[tuple]:
    """Hash matches whose pictures disagree once the dataset's mean picture is out: (a, b, distance, correlation)."""
    return [(names[i], names[j], d, c) for i, j, d, c in matches if c < min_correlation]


def identical_mask_groups(names: list[str], digests: list[str], class_counts) -> list[dict]:
    """Images whose masks are byte-for-byte equal; `classes` lists the class indices the mask holds."""
    by_digest: dict[str, list[int]] = {}
    for row, digest in enumerate(digests):
        by_digest.setdefault(digest, []).append(row)
    groups = []
    for rows in sorted((r for r in by_digest.values() if len(r) > 1), key=lambda r: r[0]):
        classes = np.nonzero(np.asarray(class_counts)[rows[0]])[0].tolist()
        groups.append({"ids": [names[r] for r in rows], "classes": classes})
    return groups


def split_leakage(groups: list[list[str]], splits: dict[str, list[str]]) -> list[dict]:
    """Groups whose members sit in more than one of `splits`, with the split(s) of each member."""
    where: dict[str, list[str]] = {}
    for split, ids in splits.items():
        for image_id in ids:
            where.setdefault(image_id, []).append(split)
    leaks = []
    for ids in groups:
        placed = {i: where[i] for i in ids if i in where}
        if len({s for split_names in placed.values() for s in split_names}) > 1:
            leaks.append({"ids": list(ids), "splits": placed})
    return leaks


def listed_twice(splits: dict[str, list[str]]) -> dict[str, list[str]]:
    """Ids that a dataset's own split files list in more than one split."""
    where: dict[str, list[str]] = {}
    for split, ids in splits.items():
        for image_id in ids:
            where.setdefault(image_id, []).append(split)
    return {i: s for i, s in sorted(where.items()) if len(s) > 1}


def propose_exclusions(near_groups: list[dict], mask_groups: list[dict], outliers: list[dict],
                       hashes: dict[str, int], threshold: int, exclude_z: float,
                       blank: list[str] = ()) -> dict[str, str]:
    """Image id -> reason, for the images the report suggests leaving out.

    - near-duplicates: the first image (by id) of each group is kept; an image is left out when it
      lies within `threshold` of an image already kept, so every exclusion names its kept twin;
    - identical masks on images that do not look alike (a copied annotation): all of them, unless the
      mask holds a single class (empty tiles share such masks legitimately);
    - grey-level outliers (mean or std) beyond `exclude_z`, or near-constant pictures (std < FLAT_STD):
      a dark street or a low-contrast field photo is data, a blank frame is not; milder outliers and
      class-mix outliers are only reported, for a person to look at;
    - images with no labelled pixel (`blank`).
    """
    excluded: dict[str, str] = {}
    for group in near_groups:
        kept: list[str] = []
        for image_id in group["ids"]:
            twin = min(kept, key=lambda k: hamming(hashes[k], hashes[image_id]), default=None)
            distance = hamming(hashes[twin], hashes[image_id]) if twin is not None else HASH_BITS
            if twin is not None and distance <= threshold:
                excluded[image_id] = f"near-duplicate of {twin} (hash distance {distance}/{HASH_BITS})"
            else:
                kept.append(image_id)
    for group in mask_groups:
        looks = [hashes[i] for i in group["ids"]]
        alike = all(hamming(looks[0], h) <= threshold for h in looks[1:])
        if len(group["classes"]) > 1 and not alike:
            for image_id in group["ids"]:
                excluded.setdefault(image_id, f"mask identical to that of {len(group['ids']) - 1} other image(s) "
                                              "that do not look alike (a copied annotation?)")
    for outlier in outliers:
        grey = [r for r in outlier["reasons"] if r["feature"] in ("mean", "std")]
        if any(abs(r["z"]) > exclude_z or (r["feature"] == "std" and r["value"] < FLAT_STD) for r in grey):
            excluded.setdefault(outlier["id"], "outlier: " + ", ".join(
                f"grey-level {r['feature']} {r['value']:.1f} (robust z {r['z']:+.1f})" for r in grey))
    for image_id in blank:
        excluded.setdefault(image_id, "no labelled pixel in its mask")
    return dict(sorted(excluded.items()))
