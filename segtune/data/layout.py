"""Which files make a dataset folder: its images/, masks/ and splits/ folders (any case), the image and mask
files paired by name, and the split files' lists of ids."""

from __future__ import annotations

import os
from pathlib import Path

from segtune.data.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
"""Image files readers and `segtune predict` read (any case)."""


def dataset_folder(root: Path, name: str) -> Path:
    """root/<name> whatever the case of its name (images/, Images/, IMAGES/); root/name when there is none."""
    found = sorted(p for p in root.iterdir() if p.name.lower() == name and p.is_dir())
    if len(found) > 1:
        raise DataError(str(root), [(str(root), f"has {len(found)} folders named {name}/ "
                                                f"({', '.join(p.name + '/' for p in found)}); keep only one")])
    return found[0] if found else root / name


def other_folders(root: Path, missing: Path) -> str:
    """What a missing images/ or masks/ may be called here instead (labels/, annotations/ ...), to rename."""
    others = sorted(p.name + "/" for p in root.iterdir() if p.is_dir() and p.name.lower() not in ("images", "masks",
                                                                                                   "splits"))
    return f"; {root} holds {', '.join(others[:6])}: rename (or link) the one meant to {missing.name}/" if others else ""


def list_images(folder: Path, problems) -> dict[str, Path]:
    """Stem -> file; two files with one stem (a.png, a.jpg) are a problem, as either could be meant."""
    files = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem in files:
            problems.append((str(path), f"has the same name as {files[path.stem].name}; files pair up by name, "
                                        "so keep only one of the two"))
        files.setdefault(path.stem, path)
    return files


_SEPARATORS = "_-. "


def pair_by_suffix(images: dict[str, Path], masks: dict[str, Path]) -> tuple[dict[str, Path], dict[str, Path]]:
    """Image and mask files keyed by the name they share. Where plain names pair none, a suffix every mask name
    (and perhaps every image name) carries is dropped when that pairs every mask: a_mask.png with a.jpg,
    123_mask.png with 123_sat.jpg (the suffix starts at a separator: _ - . or space). Else the plain names."""
    if set(images) & set(masks) or not images or not masks:
        return images, masks
    trimmed_images, trimmed_masks = _trimmed(images), _trimmed(masks)
    for pair in ((images, trimmed_masks), (trimmed_images, trimmed_masks), (trimmed_images, masks)):
        if pair[1] and set(pair[1]) <= set(pair[0]):
            return pair
    return images, masks


def _trimmed(files: dict[str, Path]) -> dict[str, Path]:
    """files keyed by their names less the suffix all of them share from a separator on; {} when there is none
    or trimming would give two files one name."""
    shared = os.path.commonprefix([stem[::-1] for stem in files])[::-1]
    start = next((i for i, c in enumerate(shared) if c in _SEPARATORS), None)
    if start is None:
        return {}
    cut = len(shared) - start
    trimmed = {stem[:-cut]: path for stem, path in files.items()}
    return trimmed if len(trimmed) == len(files) and all(trimmed) else {}


SPLIT_FILE_NAMES = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
"""The split files read from splits/ (name.txt), by split."""


def aliases(ids, image_files: dict[str, Path], mask_files: dict[str, Path]) -> dict[str, str]:
    """What a split file may list for each pair -> its id: the id, or either file's name, with or without suffix."""
    names = {}
    for pair in ids:
        for path in (image_files[pair], mask_files[pair]):
            names.update({path.name: pair, path.stem: pair})
    return {**names, **{pair: pair for pair in ids}}


def read_splits(root: Path, known: dict[str, str]) -> dict[str, list[str]]:
    """splits/train.txt, val.txt (or valid.txt, validation.txt), test.txt: one id, file name or path per line."""
    splits, folder = {}, dataset_folder(root, "splits")
    for split, names in SPLIT_FILE_NAMES.items():
        paths = [folder / f"{name}.txt" for name in names if (folder / f"{name}.txt").exists()]
        if len(paths) > 1:
            raise DataError(str(root), [(str(folder), f"has {', '.join(p.name for p in paths)}: one {split} split "
                                                      "file, please; remove the others")])
        if paths:
            listed = [line.strip() for line in paths[0].read_text().splitlines() if line.strip()]
            found = [known.get(line, known.get(Path(line.replace("\\", "/")).name)) for line in listed]
            missing = [line for line, pair in zip(listed, found) if pair is None]
            if missing:
                raise DataError(str(root), [(str(paths[0]), f"lists {len(missing)} id(s) with no image/mask pair, "
                                                            f"e.g. {missing[:3]}")])
            splits[split] = list(dict.fromkeys(found))  # a pair listed twice (by id and by file name) once
    return splits
