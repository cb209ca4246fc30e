"""Class names and ignore index of a dataset: classes.json or the config, checked before any compute.

    DATA/classes.json   {"names": ["background", "crop", "weed"], "ignore_index": 255}

"names" is a list of at least two distinct strings in index order; "ignore_index" an integer that is
no class's index, or null when every pixel is labelled (absent: the config's ignore_index).
"""

from __future__ import annotations

import json
from pathlib import Path

from segtune.data.errors import DataError
from segtune.data.segmentation_data import default_palette

CLASSES_EXAMPLE = '{"names": ["background", "crop", "weed"], "ignore_index": 255}'


def read_classes(root: Path, classes, colour_map, ignore_index):
    """Class names and ignore index: classes.json when present, else the config; both checked."""
    spec = root / "classes.json"
    palette, names_from, ignore_from = (), "option classes", "option ignore_index"
    if spec.exists():
        info = _read_classes_json(spec)
        names, names_from = tuple(info["names"]), str(spec)
        if "ignore_index" in info:
            ignore_index, ignore_from = info["ignore_index"], str(spec)
        colours = info.get("palette_rgb_for_display") or info.get("source_palette_rgb") or {}
        if all(n in colours for n in names):
            palette = tuple(tuple(_first_colour(colours[n])) for n in names)
    elif classes:
        names = tuple(classes)
    elif colour_map:
        names_from = "option colour_map (no classes.json and no option classes)"
        names = tuple(f"class_{i}" for i in range(max((c for c in colour_map.values() if c != ignore_index), default=0) + 1))
    else:
        raise DataError(str(root), [(str(spec), f"missing; add classes.json ({CLASSES_EXAMPLE}) or set `classes` in the config")])
    check_classes(names, names_from, ignore_index, ignore_from, str(root))
    return names, ignore_index, palette or default_palette(len(names))


def _read_classes_json(spec: Path) -> dict:
    """classes.json as a dict whose "names" is a list of strings; anything else names the file."""
    try:
        info = json.loads(spec.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(str(spec.parent), [(str(spec), f"is not valid JSON ({error}); write e.g. {CLASSES_EXAMPLE}")]) from None
    names = info.get("names") if isinstance(info, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        shown = "no \"names\"" if names is None else f'"names": {json.dumps(names)[:60]}'
        raise DataError(str(spec.parent), [(str(spec), f'has {shown}; "names" must be a list of class names (strings) '
                                                       f"in index order, e.g. {CLASSES_EXAMPLE}")])
    ignore = info.get("ignore_index")
    if ignore is not None and (isinstance(ignore, bool) or not isinstance(ignore, int)):
        raise DataError(str(spec.parent), [(str(spec), f'"ignore_index": {json.dumps(ignore)} must be an integer or null')])
    return info


def check_classes(names, names_from, ignore_index, ignore_from, source) -> None:
    """At least two distinct classes, and an ignore index that is none of them."""
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(source, [(names_from, f"class name(s) {repeated} appear more than once; give each class its own name")])
    if len(names) < 2:
        raise DataError(source, [(names_from, f"has {len(names)} class(es) {list(names)}; segmentation needs at least 2 "
                                              "(e.g. background and the object): list every class, background included")])
    if ignore_index is not None and 0 <= ignore_index < len(names):
        raise DataError(source, [(ignore_from, f"ignore_index {ignore_index} is the index of class {names[ignore_index]!r}, "
                                               "which would drop that class from training and scoring; set ignore_index "
                                               f"to a value of at least {len(names)} (255 is usual) or null")])


def _first_colour(value):
    return value[0] if isinstance(value[0], list) else value
