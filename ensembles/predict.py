"""Segment images of any size with an exported bundle: `segtune predict BUNDLE INPUT OUTPUT`.

    segtune predict bundle/ photo.jpg predictions/
    segtune predict bundle/ images/ predictions/ --runtime onnx --batch-size 8 --probabilities
    segtune predict bundle/ images/ predictions/ --uncertainty disagreement --tile-above 16

For each image writes <stem>.png (class index per pixel), <stem>_colour.png (the manifest's palette),
with --probabilities <stem>_probs.npy (float16, K x H x W) and with --uncertainty <stem>_uncertainty.png
(8-bit grey, brighter = less sure), all at the image's own size. Each image is first scaled as
training read the members' images (the manifest's input_scale). An image of at most --tile-above
megapixels (padded to a multiple of 32, at least one tile) goes through the network whole, in one
pass, as validation scored images during the search; a larger one (and every image, with a bundle
whose networks take tiles of its own size only) is cut into overlapping tiles of the bundle's size,
whose probabilities are blended with weights that fall off towards tile edges, so no seams show
where tiles meet. The probabilities are resized back to the image's size. Nothing is written over an
input file.

Uncertainty: entropy (the default) is the entropy of the ensemble's class probabilities divided by
log(K), 0 for a certain pixel and 1 for one spread evenly over all K classes; disagreement is the
share of the ensemble's members whose most probable class is not the ensemble's (0 when all agree),
computed by the exported network (bundles of format_version 3, with two or more members).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ensembles.bundle import MODEL_FILES, BundleError, load_bundle
from segtune.data.decode import decode_image
from segtune.data.layout import IMAGE_SUFFIXES
from segtune.tiling import TILE_MULTIPLE, blend_window, overlap_pixels, tile_starts

TILE_ABOVE = 4.0
"""Megapixels (as the network sees an image, padded) above which predict tiles instead of one whole-image pass; 0 tiles
all. A whole 2048x2048 pass of two depth-5 resnet34 members (Unet, DeepLabV3+) took 1.4 GB (TorchScript) and 2.2 GB
(ONNX Runtime) of CPU memory above the loaded bundle: up to about 0.5 GB per megapixel."""
UNCERTAINTY = ("entropy", "disagreement")
"""What --uncertainty maps: the first is the default."""


def predict_image(bundle, image: np.ndarray, batch_size: int = 4, tile_above: float = TILE_ABOVE) -> np.ndarray:
    """Class probabilities (K, H, W) float32 of an (H, W, C) uint8 image of any size, at that size.

    The networks see the image at the scale their training read images (the manifest's input_scale,
    bilinear like segtune.data's readers), whole when it fits (`tile_above` megapixels) and the bundle
    takes any size, else in tiles; their probabilities are resized back (bilinear).
    """
    return _predict(bundle, image, batch_size, tile_above, False)[0]


def predict_with_uncertainty(bundle, image: np.ndarray, kind: str = UNCERTAINTY[0], batch_size: int = 4,
                             tile_above: float = TILE_ABOVE) -> tuple[np.ndarray, np.ndarray]:
    """As predict_image, with an (H, W) uint8 uncertainty map (`kind`: entropy or disagreement; 255 = least sure)."""
    if kind not in UNCERTAINTY:
        raise ValueError(f"unknown uncertainty {kind!r}; choose {' or '.join(UNCERTAINTY)}")
    probs, disagreement = _predict(bundle, image, batch_size, tile_above, kind == "disagreement")
    return probs, uncertainty_image(normalised_entropy(probs) if kind == "entropy" else disagreement)


def normalised_entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy of (K, H, W) class probabilities over log(K): 0 where one class has it all, 1 where all K are equal."""
    # 0 log 0 = 0: a class with no probability adds nothing
    terms = np.where(probs > 0, -probs * np.log(np.maximum(probs, np.finfo(np.float32).tiny)), 0.0)
    return (terms.sum(0) / np.log(len(probs))).astype(np.float32)


def uncertainty_image(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 grey levels 0..255 (rounded; outside [0, 1] clipped)."""
    return np.rint(np.clip(values, 0.0, 1.0) * 255).astype(np.uint8)


def _predict(bundle, image: np.ndarray, batch_size: int, tile_above: float,
             disagreement: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Probabilities (K, H, W) and, when asked, the members' disagreement (H, W), both at the image's size."""
    channels = bundle.manifest["in_channels"]
    image = image[..., None] if image.ndim == 2 else image
    if image.ndim != 3 or image.shape[2] != channels:
        raise ValueError(f"image of shape {image.shape} has {image.shape[-1]} channel(s), the bundle takes "
                         f"{channels}; convert it to {'grayscale' if channels == 1 else f'{channels} channels (RGB)'}")
    size = image.shape[:2]
    scaled = _network_size(bundle.manifest, size)
    if scaled != size:
        resized = [Image.fromarray(image[..., c]).resize(scaled[::-1], Image.BILINEAR) for c in range(image.shape[2])]
        image = np.stack([np.asarray(c) for c in resized], -1)
    if _runs_whole(bundle.manifest, scaled, tile_above):
        maps = _predict_whole(bundle, image, disagreement)
    else:
        maps = _predict_tiles(bundle, image, batch_size, disagreement)
    if scaled == size:
        return maps
    probs, share = maps
    return _resized(probs, size), None if share is None else _resized(share[None], size)[0]


def _resized(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, h, w) float32 maps resized to (N, *size), bilinear."""
    return np.stack([np.asarray(Image.fromarray(m).resize(size[::-1], Image.BILINEAR)) for m in maps])


def _network_size(manifest: dict, size: tuple[int, int]) -> tuple[int, int]:
    """(H, W) at which the networks see an image of `size`: the manifest's input_scale, or its own size (null)."""
    scale = manifest["input_scale"]
    return tuple(size) if scale is None else tuple(scale["resize"])


def whole_image_size(size, tile) -> tuple[int, int]:
    """(H, W) an image of `size` is padded to for one whole-image pass: multiples of 32 (as training's validation
    pads, trainables.model.predict_logits), and at least one tile, the smallest size the export check ran."""
    return tuple(max(side, -(-length // TILE_MULTIPLE) * TILE_MULTIPLE) for length, side in zip(size, tile))


def _runs_whole(manifest: dict, size: tuple[int, int], tile_above: float) -> bool:
    """Whether an image the networks see at `size` goes through them whole (else in tiles)."""
    padded = whole_image_size(size, manifest["tile"])
    return manifest["any_size"] and padded[0] * padded[1] <= tile_above * 1e6


def _predict_whole(bundle, image: np.ndarray, disagreement: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """One pass over the (H, W, C) image mirrored out to whole_image_size, cropped back."""
    height, width = image.shape[:2]
    padded_h, padded_w = whole_image_size((height, width), bundle.manifest["tile"])
    padded = np.pad(image, ((0, padded_h - height), (0, padded_w - width), (0, 0)), mode="reflect")
    batch = padded.transpose(2, 0, 1)[None].astype(np.float32)
    if not disagreement:
        return bundle.predict(batch)[0, :, :height, :width], None
    probs, share = bundle.predict_with_disagreement(batch)
    return probs[0, :, :height, :width], share[0, :height, :width]


def _predict_tiles(bundle, image: np.ndarray, batch_size: int,
                   disagreement: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Probabilities (K, H, W) of an (H, W, C) image as the networks see it, from overlapping blended tiles;
    with the members' disagreement (H, W) blended with the same weights when asked."""
    manifest = bundle.manifest
    tile_h, tile_w = manifest["tile"]
    height, width = image.shape[:2]
    # Images smaller than a tile are mirrored out to one tile; larger ones end on a tile flush with the edge.
    image = np.pad(image, ((0, max(0, tile_h - height)), (0, max(0, tile_w - width)), (0, 0)), mode="reflect")
    ramp_h, ramp_w = (overlap_pixels(size, manifest["overlap"]) for size in (tile_h, tile_w))
    window = np.outer(blend_window(tile_h, ramp_h), blend_window(tile_w, ramp_w))
    corners = [(y, x) for y in tile_starts(image.shape[0], tile_h, tile_h - ramp_h)
               for x in tile_starts(image.shape[1], tile_w, tile_w - ramp_w)]
    probs = np.zeros((len(manifest["classes"]), *image.shape[:2]), np.float32)
    share = np.zeros(image.shape[:2], np.float32) if disagreement else None
    weights = np.zeros(image.shape[:2], np.float32)
    for first in range(0, len(corners), batch_size):
        batch = corners[first:first + batch_size]
        tiles = np.stack([image[y:y + tile_h, x:x + tile_w] for y, x in batch]).transpose(0, 3, 1, 2)
        tiles = tiles.astype(np.float32)
        outputs = bundle.predict_with_disagreement(tiles) if disagreement else (bundle.predict(tiles),)
        for i, (y, x) in enumerate(batch):
            probs[:, y:y + tile_h, x:x + tile_w] += outputs[0][i] * window
            weights[y:y + tile_h, x:x + tile_w] += window
            if disagreement:
                share[y:y + tile_h, x:x + tile_w] += outputs[1][i] * window
    probs = (probs / weights)[:, :height, :width]
    return probs, None if share is None else (share / weights)[:height, :width]


def read_image(path: Path, channels: int) -> np.ndarray:
    """(H, W, C) uint8 decoded as in training (segtune.data.decode); a channel count the bundle cannot take is an error."""
    image = decode_image(path)
    if image.shape[2] != channels:
        read_as = "RGB" if image.shape[2] == 3 else "grayscale"
        raise ValueError(f"{image.shape[2]} channel(s) ({read_as}) but the bundle takes in_channels={channels}; "
                         f"convert the image to {'grayscale (L)' if channels == 1 else 'RGB'} first")
    return image


def output_files(folder: Path, stem: str, probabilities: bool, uncertainty: bool = False) -> tuple[Path, ...]:
    """What write_prediction writes for an image named <stem>.*: index map, colour map, probabilities, uncertainty."""
    files = (folder / f"{stem}.png", folder / f"{stem}_colour.png")
    files = (*files, folder / f"{stem}_probs.npy") if probabilities else files
    return (*files, folder / f"{stem}_uncertainty.png") if uncertainty else files


def write_prediction(probs: np.ndarray, palette: np.ndarray, folder: Path, stem: str, probabilities: bool,
                     uncertainty: np.ndarray | None = None) -> None:
    """The index and colour PNGs, the float16 probabilities when asked and the uint8 uncertainty map when given."""
    classes = probs.argmax(0).astype(np.uint8)
    files = output_files(folder, stem, probabilities, uncertainty is not None)
    Image.fromarray(classes).save(files[0])
    Image.fromarray(palette[classes]).save(files[1])
    if probabilities:
        np.save(files[2], probs.astype(np.float16))
    if uncertainty is not None:
        Image.fromarray(uncertainty).save(files[-1])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segtune predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path, help="bundle folder written by export_bundle (holds manifest.json)")
    parser.add_argument("input", type=Path, help=f"an image or a folder of images ({', '.join(IMAGE_SUFFIXES)})")
    parser.add_argument("output", type=Path, help="folder for the predictions (created if missing); "
                        "an output that would replace an input image is refused")
    parser.add_argument("--runtime", choices=tuple(MODEL_FILES), default="torchscript",
                        help="network to run (default torchscript)")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto",
                        help="auto uses a GPU when the runtime sees one (default auto)")
    parser.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass (default 4)")
    parser.add_argument("--probabilities", action="store_true", help="also write <stem>_probs.npy (float16, K x H x W)")
    parser.add_argument("--uncertainty", nargs="?", const=UNCERTAINTY[0], choices=UNCERTAINTY,
                        help="also write <stem>_uncertainty.png, brighter = less sure: entropy (the default when "
                             "no value is given) of the ensemble's probabilities over log(classes), or disagreement: "
                             "share of members whose class is not the ensemble's")
    parser.add_argument("--tile-above", type=float, default=TILE_ABOVE, metavar="MEGAPIXELS",
                        help="images larger than this (as the network sees them) are tiled, smaller ones run whole "
                             f"in one pass; 0 tiles every image (default {TILE_ABOVE:g})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    files = _input_files(args.input, args.output, args.probabilities, args.uncertainty is not None)
    if args.batch_size < 1:
        raise SystemExit(f"segtune predict: --batch-size {args.batch_size} must be at least 1")
    if not args.tile_above >= 0:
        raise SystemExit(f"segtune predict: --tile-above {args.tile_above} must be 0 or more megapixels")
    try:
        bundle = load_bundle(args.bundle, args.runtime, args.device)
    except BundleError as error:
        raise SystemExit(f"segtune predict: {error}") from None
    _check_bundle(bundle, args)
    try:
        args.output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SystemExit(f"segtune predict: OUTPUT {args.output} cannot be created ({error}); pass a folder") from None
    palette = np.array(bundle.manifest["palette"], np.uint8)
    written, failed, started = set(), [], time.perf_counter()
    for file in tqdm(files, unit="image", disable=not sys.stderr.isatty()):
        try:
            if file.stem in written:
                raise ValueError(f"another image named {file.stem}.* was written to {args.output} already; rename one")
            image = read_image(file, bundle.manifest["in_channels"])
            if args.uncertainty is None:
                probs, uncertainty = predict_image(bundle, image, args.batch_size, args.tile_above), None
            else:
                probs, uncertainty = predict_with_uncertainty(bundle, image, args.uncertainty, args.batch_size,
                                                              args.tile_above)
            write_prediction(probs, palette, args.output, file.stem, args.probabilities, uncertainty)
            written.add(file.stem)
        except BundleError as error:  # the bundle, not this image: every other image would fail the same way
            raise SystemExit(f"segtune predict: {error}") from None
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            failed.append(file)
            tqdm.write(f"segtune predict: {file}: {error}", file=sys.stderr)
    seconds = time.perf_counter() - started
    print(f"written {len(written)}, failed {len(failed)} in {seconds:.1f} s ({len(written) / seconds:.2f} images/s) "
          f"to {args.output}" + (f"; failed: {', '.join(f.name for f in failed)}" if failed else ""))
    return 1 if failed else 0


def _check_bundle(bundle, args: argparse.Namespace) -> None:
    """Refuse what this bundle cannot do before any image; say how it will run what it can."""
    manifest, folder = bundle.manifest, args.bundle
    if len(manifest["classes"]) > 256:
        raise SystemExit(f"segtune predict: {folder} has {len(manifest['classes'])} classes; index PNGs hold "
                         "at most 256")
    if args.uncertainty == "disagreement" and "disagreement" not in manifest["outputs"]:
        raise SystemExit(f"segtune predict: --uncertainty disagreement needs the members' outputs, which bundle "
                         f"{folder} (format_version {manifest['format_version']}) does not export; re-export it with "
                         "`segtune ensemble` or use --uncertainty entropy")
    if args.uncertainty == "disagreement" and len(manifest["members"]) < 2:
        raise SystemExit(f"segtune predict: --uncertainty disagreement needs two or more members, bundle {folder} "
                         "holds one; use --uncertainty entropy")
    if manifest["sha256"] is None:
        print(f"note: bundle {folder} carries no checksums (exported before segtune recorded them), so its "
              "files were not verified; re-export it to add them")
    if not manifest["any_size"]:
        print(f"note: bundle {folder}'s networks take {manifest['tile'][0]}x{manifest['tile'][1]} tiles only, so "
              "every image is tiled (--tile-above does not apply); re-export it with this segtune to run whole images")
    scale = manifest["input_scale"]
    if scale is not None:
        print(f"images are resized to {scale['resize'][0]}x{scale['resize'][1]} as in training; the outputs "
              "have each image's own size")


def _input_files(path: Path, output: Path, probabilities: bool, uncertainty: bool) -> list[Path]:
    """The images to segment; a missing input, an empty folder or an output that would overwrite inputs stops here."""
    if not path.exists():
        raise SystemExit(f"segtune predict: INPUT {path} does not exist; pass an image file or a folder of images")
    if output.is_file():
        raise SystemExit(f"segtune predict: OUTPUT {output} is a file; pass a folder for the predictions "
                         "(created if missing)")
    if path.is_file():
        files = [path]
    else:
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SystemExit(f"segtune predict: INPUT folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        if output.resolve() == path.resolve():
            raise SystemExit(f"segtune predict: OUTPUT {output} is the INPUT folder; <stem>.png would overwrite "
                             "input images, choose another folder")
    inputs = {file.resolve() for file in files}
    for file in files:
        clash = next((out for out in output_files(output, file.stem, probabilities, uncertainty)
                      if out.resolve() in inputs), None)
        if clash:
            raise SystemExit(f"segtune predict: the prediction {clash} would overwrite the input image of that name; "
                             "choose another OUTPUT folder")
    return files
