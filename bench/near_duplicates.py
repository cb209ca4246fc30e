"""Near-duplicate figures per dataset: the hash rule alone (as before) against hash + correlation (now).

    python bench/near_duplicates.py ../shared/datasets/cwfid ../shared/datasets/camvid \
        ../shared/datasets/isbi2012_membrane [--threshold 48] [--min-correlation 0.6]

Prints one markdown table row per dataset: the distribution of each image's nearest-neighbour hash
distance (median, 10th percentile, least), the groups (and images in them) that every hash match within
--threshold makes (the rule before), those that confirmed matches make (segtune inspect's default
now), how many hash matches were not confirmed, and the lowest correlation among confirmed matches.
Reads the data only (hashes as segtune inspect computes them); writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from segtune.data import load_dataset  # noqa: E402
from segtune.inspect.duplicates import (DEFAULT_HASH_THRESHOLD, MIN_CORRELATION, hash_matches,  # noqa: E402
                                        near_duplicate_groups)
from segtune.inspect.hashing import HASH_BITS, fingerprint  # noqa: E402


def nearest_distances(hashes: list[int]) -> np.ndarray:
    """Each image's hash distance to its nearest other image."""
    bits = np.array([[(h >> k) & 1 for k in range(HASH_BITS)] for h in hashes], dtype=np.int32)
    distance = bits @ (1 - bits).T + (1 - bits) @ bits.T
    np.fill_diagonal(distance, HASH_BITS + 1)
    return distance.min(1)


def figures(path: str, threshold: int, min_correlation: float) -> str:
    data = load_dataset(path)
    hashes, thumbnails = zip(*(fingerprint(image) for image in data.images))
    nearest = nearest_distances(list(hashes))
    matches = hash_matches(hashes, threshold, thumbnails)
    before = near_duplicate_groups(data.names, matches, min_correlation=-1.0)
    after = near_duplicate_groups(data.names, matches, min_correlation)
    confirmed = [m[3] for m in matches if m[3] >= min_correlation]
    return (f"| {Path(path).name} | {len(hashes)} | {np.median(nearest):.0f} / {np.percentile(nearest, 10):.0f} / "
            f"{nearest.min()} | {len(before)} ({sum(len(g['ids']) for g in before)}) | "
            f"{len(after)} ({sum(len(g['ids']) for g in after)}) | {len(matches) - len(confirmed)} of {len(matches)} | "
            + (f"{min(confirmed):.2f} |" if confirmed else "- |"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", help="dataset folders, as segtune inspect takes them")
    parser.add_argument("--threshold", type=int, default=DEFAULT_HASH_THRESHOLD)
    parser.add_argument("--min-correlation", type=float, default=MIN_CORRELATION)
    args = parser.parse_args()
    print(f"| dataset | images | NN distance median / p10 / min | hash <= {args.threshold} alone: groups (images) "
          f"| + correlation >= {args.min_correlation}: groups (images) | matches not confirmed | "
          "least confirmed correlation |")
    print("|---|---|---|---|---|---|---|")
    for path in args.datasets:
        print(figures(path, args.threshold, args.min_correlation), flush=True)


if __name__ == "__main__":
    main()
