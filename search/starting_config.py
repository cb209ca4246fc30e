"""Write a starting search config from what `segtune inspect` finds: `segtune init DATA`.

    segtune init ../field_photos                            # writes search.yaml (+ exclusions.txt beside it)
    segtune init tiles.npz --classes a,b,c,d,e --output tiles.yaml
    python search/run.py --config search.yaml               # runs as written

Every line says what it is and why it has that value: data, classes, colour map, ignore index, a resize
for large images, a crop that fits the network, background left out of the mean, the preset that fits,
and segtune inspect's exclusion list. RGB colour masks given no --colour-map get one class per colour
with placeholder names (`segtune inspect DATA` lists the colours): rename them, and give colours of one
class the same index. Every other option keeps its default.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from search.config import SearchConfig, load_config
from segtune.data import DataError, load_dataset
from segtune.data.errors import ColourMasksWithoutMap
from segtune.inspect import inspect_dataset
from segtune.inspect.colours import count_colours, lossiness, suggest_colour_map
from segtune.inspect.inspection import DEFAULT_CROP
from segtune.inspect.outputs import write_exclusion_list
from segtune.inspect.run import add_data_arguments
from segtune.tiling import TILE_MULTIPLE

RESIZE_ABOVE = 1024
"""Images whose long side exceeds this many pixels are read halved (as often as needed): random crops of
full-size photos would see little of each scene, and whole-image validation would be slow."""
BACKGROUND_SHARE = 0.6
"""A class over this share of labelled pixels that looks like background is left out of the mIoU mean."""
BACKGROUND_NAMES = {"background", "bg", "void", "clutter", "unlabelled", "unlabeled", "other"}
FEW_CLASSES = 4
"""RGB images with at most this many classes get the crop_weed preset (the field-photo report's space)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segtune init", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser)
    parser.add_argument("--output", default="search.yaml", help="the config to write (default search.yaml)")
    parser.add_argument("--force", action="store_true", help="overwrite --output (and exclusions.txt beside it)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    output = Path(args.output)
    exclusions = output.with_name("exclusions.txt")
    if output.exists() and not args.force:
        raise SystemExit(f"segtune init: {output} exists; choose another --output or add --force to overwrite it")
    data, colour_map, colours = _read(args)
    report = inspect_dataset(data)
    if report["exclusions"] and exclusions.exists() and not args.force:
        raise SystemExit(f"segtune init: {exclusions} exists (the exclusion list is written beside --output); "
                         "move it, choose another --output folder, or add --force to overwrite both")
    lines, values = starting_config(args.data, data, report, colour_map, colours,
                                    exclusions if report["exclusions"] else None)
    load_config(None, values)  # the search refuses nothing it reads from this file
    output.parent.mkdir(parents=True, exist_ok=True)
    if report["exclusions"]:
        write_exclusion_list(report, exclusions)
    output.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    print(f"\nwritten {output}" + (f" and {exclusions}" if report["exclusions"] else "")
          + f"; edit it, then run: python search/run.py --config {output}")
    return 0


def _read(args):
    """The dataset as the search will read it, its colour map (given, suggested or None) and the mask colours
    counted when none was given."""
    try:
        try:
            return load_dataset(args.data, classes=args.classes, colour_map=args.colour_map,
                                ignore_index=args.ignore_index), args.colour_map, None
        except ColourMasksWithoutMap as masks:
            colours = count_colours(masks.mask_files)
            jpeg = [Path(p).name for p in masks.mask_files if Path(p).suffix.lower() in (".jpg", ".jpeg")]
            why = lossiness(colours) or (jpeg and f"are saved as JPEG ({', '.join(jpeg[:3])} ...), which segtune "
                                                  "refuses as masks")
            if why:
                raise SystemExit(f"segtune init: masks of {args.data}: {why}; nothing written (`segtune inspect "
                                 f"{args.data}` lists their colours)") from None
            names, colour_map = suggest_colour_map(colours)
            return load_dataset(args.data, classes=tuple(names), colour_map=colour_map,
                                ignore_index=args.ignore_index), colour_map, colours
    except DataError as error:
        raise SystemExit(f"segtune init: {error}") from None


def starting_config(data_argument: str, data, report: dict, colour_map, colours, exclusions: Path | None):
    """The config's lines (each with its reason) and its values, for load_config to check."""
    size = tuple(report["sizes"][0]["size"])
    resize = _resize(size)
    crop = _crop([resize] if resize else [s["size"] for s in report["sizes"]])
    path = data_argument if data_argument == "synthetic" else str(Path(data_argument).expanduser().resolve())
    space, space_why = _space(data.in_channels, data.num_classes)
    head = [("data", path, f"{report['images']} images, {data.in_channels} channel(s), most {size[0]} x {size[1]} px"),
            _classes_entry(data, colour_map, colours, path)]
    labelled = sum(row["pixels"] for row in report["class_table"])
    unlabelled = 100 * report["unlabelled_pixels"] / max(1, labelled + report["unlabelled_pixels"])
    tail = [("ignore_index", data.ignore_index, _ignore_why(path, colour_map, unlabelled)),
            ("resize", list(resize) if resize else None,
             f"images are large ({size[0]} x {size[1]}): read halved until the long side is at most {RESIZE_ABOVE} px, "
             f"sides multiples of {TILE_MULTIPLE}" + ("; images of other sizes are stretched to it"
                                                      if len(report["sizes"]) > 1 else "")
             if resize else f"null: images are at most {RESIZE_ABOVE} px a side, read at their own size"),
            ("crop", list(crop), f"random training window: at most {DEFAULT_CROP[0]} px a side, within the smallest "
                                 f"image, a multiple of {TILE_MULTIPLE} (the deepest encoder halves it 5 times)"),
            _mean_entry({row["name"]: row["share"] for row in report["class_table"]}),
            ("space", space, space_why),
            _exclusion_entry(exclusions, report)]
    lines = [f"# Starting search config written by `segtune init {data_argument}`; every line says why.",
             "# Run: python search/run.py --config <this file>; flags override it (python search/run.py --help).",
             *_render(head), *(_colour_map_lines(data, colour_map, colours) if colour_map else []), *_render(tail),
             f"# Every other option keeps its default (num_samples {SearchConfig.num_samples}, max_epochs "
             f"{SearchConfig.max_epochs} ...): README, Configuration."]
    values = {key: value for key, value, _ in head + tail if not key.startswith("#")}
    return lines, {**values, "colour_map": colour_map} if colour_map else values


def _resize(size: tuple[int, int]) -> tuple[int, int] | None:
    """(H, W) halved until the long side is at most RESIZE_ABOVE, sides rounded to TILE_MULTIPLE; None if small."""
    factor = 1
    while max(size) / factor > RESIZE_ABOVE:
        factor *= 2
    if factor == 1:
        return None
    return tuple(max(TILE_MULTIPLE, round(side / factor / TILE_MULTIPLE) * TILE_MULTIPLE) for side in size)


def _crop(sizes) -> tuple[int, int]:
    """Per axis: DEFAULT_CROP's side, or the smallest image's side rounded down to TILE_MULTIPLE (at least one)."""
    smallest = [min(s[axis] for s in sizes) for axis in (0, 1)]
    return tuple(max(TILE_MULTIPLE, min(default, side // TILE_MULTIPLE * TILE_MULTIPLE))
                 for default, side in zip(DEFAULT_CROP, smallest))


def _space(channels: int, num_classes: int) -> tuple[str, str]:
    if channels == 1:
        return "terrain", ("grayscale images: the terrain preset (light U-Nets, cross-entropy warm-up then focal "
                           "Tversky or Dice, CutMix, rare-class oversampling)")
    if num_classes <= FEW_CLASSES:
        return "crop_weed", (f"RGB images, {num_classes} classes: the crop_weed preset (ImageNet-family encoders, "
                             "class-weighted losses, NAdam; the field-photo report's space)")
    return "generic", (f"{num_classes} classes: the generic preset (every architecture, encoder and loss); "
                       "narrow it with space_overrides, or space: default for small CPU models")


def _has_classes_json(path: str) -> bool:
    return Path(path).is_dir() and (Path(path) / "classes.json").is_file()


def _classes_entry(data, colour_map, colours, path: str) -> tuple:
    if _has_classes_json(path) and not colours:
        return ("# classes", list(data.classes), f"read from {Path(path) / 'classes.json'}, which wins over a "
                                                 "classes line here")
    return ("classes", list(data.classes),
            "placeholder names, one per mask colour (black guessed as background): rename them" if colours else
            "class names in index order (no classes.json): placeholders for the mask values unless --classes gave them"
            if not colour_map else "class names in index order, for the colour map below")


def _colour_map_lines(data, colour_map: dict[str, int], colours) -> list[str]:
    """The colour_map block; each colour's share and masks when they were counted (no map given)."""
    counted = {c.key: c for c in colours or ()}
    lines = ["colour_map:   # mask colour 'R,G,B' (or grey value) -> class index; give colours of one class the same index"]
    for key, index in colour_map.items():
        name = data.classes[index] if 0 <= index < data.num_classes else "ignore index: not scored"
        found = counted.get(key)
        lines.append(f"  {json.dumps(key) + ':':<16} {index:<3}  # {name}" + (
            f": {100 * found.share:.3f}% of mask pixels, in {found.images} masks" if found else ", as --colour-map gave"))
    return lines


def _ignore_why(path: str, colour_map, unlabelled: float) -> str:
    if _has_classes_json(path):
        return f"mask value left unscored, as classes.json says (it wins over this line); {unlabelled:.3f}% of pixels"
    if colour_map:
        return (f"class index left unscored ({unlabelled:.3f}% of pixels); map an 'unlabelled' colour to it to leave "
                "that colour out")
    return f"mask value left unscored ({unlabelled:.3f}% of pixels hold it); null if every pixel is labelled"


def _mean_entry(shares: dict[str, float]) -> tuple:
    """exclude_from_mean for a dominant class that is class 0 or named like background; else a comment."""
    name, share = max(shares.items(), key=lambda item: item[1])
    first_class = next(iter(shares))
    if share > BACKGROUND_SHARE and (name == first_class or name.lower() in BACKGROUND_NAMES):
        return ("exclude_from_mean", [name], f"{name} holds {100 * share:.1f}% of labelled pixels: reported, but left "
                                             "out of the mIoU mean so the search ranks trials by the other classes")
    return ("# exclude_from_mean", [], f"no background-like class dominates (largest: {name}, {100 * share:.1f}% "
                                       "of labelled pixels), so every class counts in the mIoU mean")


def _exclusion_entry(exclusions: Path | None, report: dict) -> tuple:
    if exclusions is None:
        return ("# exclude_file", None, "segtune inspect proposes no image to leave out")
    return ("exclude_file", str(exclusions.resolve()),
            f"{len(report['exclusions'])} image(s) segtune inspect proposes to leave out (near-duplicates, blank "
            "masks, outliers; reasons in the file): delete a line to keep an image")


def _render(entries) -> list[str]:
    return [f"{key}: {json.dumps(value)}   # {why}" for key, value, why in entries]


if __name__ == "__main__":
    from segtune.cli import run_command  # exit 2 for a refusal, as `segtune ...`
    raise SystemExit(run_command(main))
