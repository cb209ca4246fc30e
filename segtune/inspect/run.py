"""Know the data before searching: `segtune inspect DATA`.

    segtune inspect ../shared/datasets/camvid
    segtune inspect tiles.npz --classes a,b,c,d,e --depth 4 --crop 64x128
    segtune inspect DATA --colour-map "0,0,0=0;255,255,255=1;216,67,82=2" --classes background,crop,weed

Prints and saves (under --output) class shares overall and per split, suggested class weights,
size checks for the network depth, a tiling plan, near-duplicate images, images sharing a mask,
outliers, split leakage, and an editable exclusion list for `segtune search --exclude-file`.
RGB colour masks given no --colour-map: lists their colours (share of pixels, images) and prints the
--colour-map and YAML colour_map that read them; `segtune init DATA` writes a search config from all this.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from segtune.data import DataError, load_dataset
from segtune.data.errors import ColourMasksWithoutMap
from segtune.inspect.colours import count_colours, format_colours
from segtune.inspect.duplicates import DEFAULT_HASH_THRESHOLD, MIN_CORRELATION
from segtune.inspect.hashing import HASH_BITS
from segtune.inspect.inspection import DEFAULT_CROP, OUTLIER_Z, inspect_dataset
from segtune.inspect.outputs import dataset_name, write_outputs
from segtune.inspect.report import format_report


def size_argument(text: str) -> tuple[int, int]:
    """'256x192' or '256,192' -> (256, 192)"""
    parts = text.lower().replace("x", ",").split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"{text!r} is not HxW, e.g. 256x256")
    return int(parts[0]), int(parts[1])


def colour_map_argument(text: str) -> dict[str, int]:
    """'255,255,255=1;216,67,82=2' -> {'255,255,255': 1, '216,67,82': 2}"""
    try:
        return {key.strip(): int(value) for key, value in (item.split("=") for item in text.split(";") if item)}
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not 'R,G,B=class;R,G,B=class'") from None


def _bounded(kind, low, high, what: str):
    """An argparse type: `kind(text)` within [low, high], else a message saying what the option takes."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what} from {low} to {high}")
        return value
    return parse


def ignore_index_argument(text: str) -> int | None:
    return None if text.lower() in ("none", "null") else int(text)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """DATA and how to read it: the arguments `segtune inspect` and `segtune init` share."""
    parser.add_argument("data", help="dataset folder (images/ + masks/), an .npz of (N, 2, H, W) pairs, or 'synthetic'")
    parser.add_argument("--classes", type=lambda t: tuple(c.strip() for c in t.split(",") if c.strip()),
                        help="class names in index order, when the data has no classes.json")
    parser.add_argument("--colour-map", type=colour_map_argument,
                        help="RGB colour masks: 'R,G,B=class;R,G,B=class' (without it their colours are listed)")
    parser.add_argument("--ignore-index", type=ignore_index_argument, default=255,
                        help="mask value that is not a class; 'none' if every pixel is labelled (default 255)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segtune inspect", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser)
    parser.add_argument("--resize", type=size_argument, help="resize images to HxW when read, as the search would")
    parser.add_argument("--depth", type=int, default=5, help="encoder depth: sizes must divide by 2**depth (default 5)")
    parser.add_argument("--crop", type=size_argument, default=DEFAULT_CROP,
                        help=f"training crop HxW for the tiling plan (default {DEFAULT_CROP[0]}x{DEFAULT_CROP[1]})")
    parser.add_argument("--hash-threshold", type=_bounded(int, 0, HASH_BITS, "a number of bits"),
                        default=DEFAULT_HASH_THRESHOLD,
                        help=f"largest perceptual-hash distance (of {HASH_BITS} bits) between near-duplicates "
                             f"(default {DEFAULT_HASH_THRESHOLD})")
    parser.add_argument("--duplicate-correlation", type=_bounded(float, -1.0, 1.0, "a correlation"),
                        default=MIN_CORRELATION,
                        help="smallest correlation of two hash-matched images' departures from the dataset's mean "
                             f"picture for them to count as near-duplicates (default {MIN_CORRELATION}; -1 counts "
                             "every hash match)")
    parser.add_argument("--outlier-z", type=float, default=OUTLIER_Z,
                        help=f"robust z-score beyond which an image is an outlier (default {OUTLIER_Z})")
    parser.add_argument("--output", help="folder for the report (default segtune_inspect/<dataset name>)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    try:
        data = load_dataset(args.data, classes=args.classes, colour_map=args.colour_map,
                            ignore_index=args.ignore_index, resize=args.resize)
    except ColourMasksWithoutMap as error:
        return _list_colours(error, args.data)
    except DataError as error:
        print(f"segtune inspect: {error}", file=sys.stderr)
        return 2
    if any(c % 2 ** args.depth for c in args.crop):
        print(f"segtune inspect: note: --crop {args.crop[0]}x{args.crop[1]} is not a multiple of 2**depth "
              f"({2 ** args.depth}); a trial would refuse it", file=sys.stderr)
    report = inspect_dataset(data, depth=args.depth, crop=args.crop, hash_threshold=args.hash_threshold,
                             min_correlation=args.duplicate_correlation, outlier_z=args.outlier_z)
    folder = Path(args.output or Path("segtune_inspect") / dataset_name(args.data))
    report = write_outputs(report, data, folder)
    print(format_report(report), end="")
    print(f"\nreport written to {folder}/ (report.txt, report.json, exclusions.txt, contact_sheets/) "
          f"in {time.perf_counter() - started:.1f} s")
    return 0


def _list_colours(masks: ColourMasksWithoutMap, data: str) -> int:
    """Colour masks read without a colour map: list their colours and the colour_map that reads them."""
    try:
        colours = count_colours(masks.mask_files)
    except DataError as error:
        print(f"segtune inspect: {error}", file=sys.stderr)
        return 2
    jpeg = sum(Path(p).suffix.lower() in (".jpg", ".jpeg") for p in masks.mask_files)
    print(format_colours(colours, data, len(masks.mask_files), jpeg), end="")
    return 0


if __name__ == "__main__":
    from segtune.cli import run_command  # exit 2 for a refusal, as `segtune ...`
    raise SystemExit(run_command(main))
