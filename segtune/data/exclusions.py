"""Exclusion lists: image ids to leave out of every split, one per line with a `# reason`.

    img_017   # near-duplicate of img_016 (hash distance 2/64)

`segtune inspect` writes one; the user edits it; `segtune search` reads it (option exclude_file).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from segtune.data.errors import DataError
from segtune.data.segmentation_data import SegmentationData


def format_exclusions(exclusions: dict[str, str], header: str = "") -> str:
    """The file's text: comment lines from `header`, then `id  # reason` per excluded image."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    width = max((len(i) for i in exclusions), default=0)
    lines += [f"{image_id:<{width}}  # {reason}" if reason else image_id for image_id, reason in exclusions.items()]
    return "\n".join(lines) + "\n"


def write_exclusions(path, exclusions: dict[str, str], header: str = "") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_exclusions(exclusions, header), encoding="utf-8")
    return path


def read_exclusions(path) -> dict[str, str]:
    """Id -> reason ('' when none); blank lines and lines starting with '#' are skipped; UTF-8 text only."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(str(path), [(f"exclude_file {path}", f"byte {error.object[error.start]:#04x} at offset "
                                                             f"{error.start} is not UTF-8 text; save the list as UTF-8")]) from None
    exclusions = {}
    for line in text.splitlines():
        image_id, _, reason = line.partition("#")
        if image_id.strip():
            exclusions[image_id.strip()] = reason.strip()
    return exclusions


def without_images(data: SegmentationData, ids, source: str) -> SegmentationData:
    """`data` less the images `ids`, also removed from the dataset's own split lists.

    A split list left empty is dropped, so that make_splits carves that split as if it had no file.

    An id that is not in the dataset is a DataError naming `source`, so a list written for another
    dataset (or with a typo) cannot silently exclude nothing.
    """
    ids = set(ids)
    unknown = sorted(ids - set(data.names))
    if unknown:
        raise DataError(data.source, [(str(source), f"lists {len(unknown)} id(s) not in the dataset, e.g. "
                                                    f"{unknown[:3]}; remove those lines or point exclude_file at "
                                                    "this dataset's list")])
    keep = [row for row, name in enumerate(data.names) if name not in ids]
    return dataclasses.replace(
        data, images=[data.images[r] for r in keep], masks=[data.masks[r] for r in keep],
        names=[data.names[r] for r in keep],
        splits={split: kept for split, listed in data.splits.items() if (kept := [i for i in listed if i not in ids])})


def exclude_images(data: SegmentationData, exclude_file) -> tuple[SegmentationData, dict[str, str]]:
    """Apply the exclusion list at `exclude_file` (None: nothing excluded); returns the data and the list."""
    if exclude_file is None:
        return data, {}
    path = Path(exclude_file).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"option exclude_file: {path} not found; write one with `segtune inspect DATA` "
                                "or set exclude_file to null")
    exclusions = read_exclusions(path)
    return without_images(data, exclusions, str(path)), exclusions
