"""The colours of RGB colour masks given no colour map: each colour's pixel share and images, whether the
masks look lossy, and the colour_map (flag and YAML) that would read them, with placeholder class names.

    colours = count_colours(error.mask_files)    # from the ColourMasksWithoutMap that load_dataset raised
    names, colour_map = suggest_colour_map(colours)
    print(format_colours(colours, "DATA"))
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segtune.data.decode import open_image
from segtune.data.errors import DataError
from segtune.data.lossy import LOSSLESS_ADVICE, NEAR_LEVELS, colour_mask_lossiness

MANY_COLOURS = 32
"""More distinct colours than this and the masks were not saved one colour per class (JPEG, smoothing)."""
MAIN_SHARE = 0.01
"""In masks with many colours, a cluster of near colours over this share of pixels is taken for a class's colour."""
BACKGROUND_GUESS = (0, 0, 0)
"""The one colour given a guessed name: black, usually the background."""


@dataclass(frozen=True)
class MaskColour:
    """One distinct colour over all masks."""
    rgb: tuple[int, int, int]
    pixels: int
    share: float
    """Share of all mask pixels, 0..1."""
    images: int
    """Masks holding at least one pixel of it."""

    @property
    def key(self) -> str:
        """The colour as a colour_map key, 'R,G,B'."""
        return ",".join(map(str, self.rgb))


def count_colours(mask_files) -> list[MaskColour]:
    """Every distinct colour over `mask_files`, most pixels first; an unreadable mask is a DataError naming it."""
    found, counts, problems = [], [], []
    for path in mask_files:
        try:
            with open_image(path) as picture:
                rgb = np.asarray(picture.convert("RGB"))
        except (OSError, ValueError) as error:
            problems.append((str(path), f"unreadable: {error}"))
            continue
        packed = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
        colours_here, counts_here = np.unique(packed, return_counts=True)
        found.append(colours_here), counts.append(counts_here)
    if problems:
        raise DataError(str(Path(problems[0][0]).parent), problems)
    distinct, which = np.unique(np.concatenate(found), return_inverse=True)
    pixels, images = np.bincount(which, np.concatenate(counts)), np.bincount(which)  # each file lists a colour once
    total = pixels.sum()
    colours = [MaskColour((int(c) >> 16, (int(c) >> 8) & 255, int(c) & 255), int(n), float(n / total), int(k))
               for c, n, k in zip(distinct, pixels, images)]
    return sorted(colours, key=lambda c: (-c.pixels, c.rgb))


def main_colours(colours: list[MaskColour]) -> list[MaskColour]:
    """The colours that stand for classes: all of them, or in masks with many colours (lossy) the most common
    colour of each cluster (colours within NEAR_LEVELS of it) holding more than MAIN_SHARE of the pixels."""
    if len(colours) <= MANY_COLOURS:
        return colours
    rgb, pixels = np.array([c.rgb for c in colours], np.int32), np.array([c.pixels for c in colours], np.float64)
    chosen: list[int] = []
    for row in range(len(colours)):   # most pixels first: each cluster is led by its most common colour
        if len(chosen) == MANY_COLOURS:
            break
        if not chosen or np.abs(rgb[chosen] - rgb[row]).max(1).min() > NEAR_LEVELS:
            chosen.append(row)
    distance = np.abs(rgb[:, None, :] - rgb[chosen][None]).max(2)
    near = distance.min(1) <= NEAR_LEVELS
    cluster = np.bincount(distance.argmin(1)[near], pixels[near], minlength=len(chosen)) / pixels.sum()
    return [colours[row] for row, share in zip(chosen, cluster) if share > MAIN_SHARE] or colours[:1]


def lossiness(colours: list[MaskColour]) -> str | None:
    """Why masks with these colours look lossy (more than MANY_COLOURS colours), or None."""
    if len(colours) <= MANY_COLOURS:
        return None
    main = main_colours(colours)
    rest = [c for c in colours if c not in main]
    found = colour_mask_lossiness(np.array([c.rgb for c in rest]), np.array([c.pixels for c in rest]),
                                  np.array([c.rgb for c in main]), unknown_as="other colours",
                                  mapped_as=f"the {len(main)} main colours")
    return found or (f"looks lossy: {len(colours)} colours where colour masks hold one per class (smoothed when "
                     f"resized, or anti-aliased when drawn?); {LOSSLESS_ADVICE}")


def suggest_colour_map(colours: list[MaskColour]) -> tuple[list[str], dict[str, int]]:
    """Class names and a colour_map giving each main colour a class: black is class 0 'background', the rest
    placeholders class_1, class_2 ... in order of pixel share (rename them; colours of one class share an index)."""
    ordered = sorted(main_colours(colours), key=lambda c: c.rgb != BACKGROUND_GUESS)  # stable: share order kept
    names = ["background" if c.rgb == BACKGROUND_GUESS else f"class_{i}" for i, c in enumerate(ordered)]
    return names, {c.key: i for i, c in enumerate(ordered)}


def colour_map_flag(colour_map: dict[str, int]) -> str:
    """The --colour-map value: 'R,G,B=class;R,G,B=class'."""
    return ";".join(f"{key}={index}" for key, index in colour_map.items())


def format_colours(colours: list[MaskColour], data: str, images: int, jpeg_masks: int = 0) -> str:
    """The listing `segtune inspect` prints for colour masks read without a colour map."""
    lines = [f"segtune inspect: {data}: RGB colour masks and no colour map; {len(colours)} distinct colour(s) over "
             f"{images} masks, most pixels first:", f"  {'colour (R,G,B)':<16} {'share':>8}  images"]
    lines += [f"  {c.key:<16} {100 * c.share:7.3f}%  {c.images}/{images}" for c in colours[:MANY_COLOURS]]
    if len(colours) > MANY_COLOURS:
        lines.append(f"  ... (+{len(colours) - MANY_COLOURS} more colours)")
    lossy = lossiness(colours)
    if lossy or jpeg_masks:
        lines.append("\nThese masks look lossy and would be refused: " + (f"{jpeg_masks} are saved as JPEG; " if jpeg_masks
                                                                            else "") + (lossy or LOSSLESS_ADVICE))
        lines.append(f"Re-export them, then run `segtune inspect {data}` again: it prints the colour map that reads them.")
        return "\n".join(lines) + "\n"
    names, colour_map = suggest_colour_map(colours)
    index_of = {key: names[index] for key, index in colour_map.items()}
    lines += ["\nGive each colour a class to read the masks. The names are placeholders to rename (black as "
              "background is a guess);\ncolours of one class share its index, e.g. two background colours both 0:",
              f"  segtune inspect {data} --colour-map \"{colour_map_flag(colour_map)}\" --classes {','.join(names)}",
              f"or in a search config (`segtune init {data}` writes one with these):",
              f"  classes: [{', '.join(names)}]", "  colour_map:"]
    shares = {c.key: c.share for c in colours}
    lines += [f"    {json.dumps(key) + ':':<16} {index:<3}  # {index_of[key]}, {100 * shares[key]:.3f}% of pixels"
              for key, index in colour_map.items()]
    return "\n".join(lines) + "\n"
