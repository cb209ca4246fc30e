"""Segment images of any size with an exported bundle: `segtune predict BUNDLE INPUT OUTPUT`.

    segtune predict bundle/ photo.jpg predictions/
    segtune predict bundle/ images/ predictions/ --runtime onnx --batch-size 8 --probabilities

For each image writes <stem>.png (class index per pixel), <stem>_colour.png (the manifest's palette)
and with --probabilities <stem>_probs.npy (float16, K x H x W), all at the image's own size. Each
image is first scaled as training read the members' images (the manifest's input_scale), cut into
overlapping tiles of the bundle's size, and the tiles' probabilities are blended with weights that
fall off towards tile edges, so no seams show where tiles meet; the blended probabilities are
resized back to the image's size. Nothing is written over an input file.
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
from segtune.data.readers import IMAGE_SUFFIXES
from segtune.tiling import overlap_pixels, tile_starts


def predict_image(bundle, image: np.ndarray, batch_size: int = 4) -> np.ndarray:
    """Class probabilities (K, H, W) float32 of an (H, W, C) uint8 image of any size, at that size.

    The networks see the image at the scale their training read images (the manifest's input_scale,
    bilinear like segtune.data's readers), and their probabilities are resized back (bilinear).
    """
    channels = bundle.manifest["in_channels"]
    image = image[..., None] if image.ndim == 2 else image
    if image.ndim != 3 or image.shape[2] != channels:
        raise ValueError(f"image of shape {image.shape} has {image.shape[-1]} channel(s), the bundle takes "
                         f"{channels}; convert it to {'grayscale' if channels == 1 else f'{channels} channels (RGB)'}")
    size = image.shape[:2]
    scaled = _network_size(bundle.manifest, size)
    if scaled == size:
        return _predict_tiles(bundle, image, batch_size)
    resized = [Image.fromarray(image[..., c]).resize(scaled[::-1], Image.BILINEAR) for c in range(image.shape[2])]
    probs = _predict_tiles(bundle, np.stack([np.asarray(c) for c in resized], -1), batch_size)
    return np.stack([np.asarray(Image.fromarray(p).resize(size[::-1], Image.BILINEAR)) for p in probs])


def _network_size(manifest: dict, size: tuple[int, int]) -> tuple[int, int]:
    """(H, W) at which the networks see an image of `size`: the manifest's input_scale, or its own size (null)."""
    scale = manifest["input_scale"]
    return tuple(size) if scale is None else tuple(scale["resize"])


def _predict_tiles(bundle, image: np.ndarray, batch_size: int) -> np.ndarray:
    """Probabilities (K, H, W) of an (H, W, C) image as the networks see it, from overlapping blended tiles."""
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
    weights = np.zeros(image.shape[:2], np.float32)
    for first in range(0, len(corners), batch_size):
        batch = corners[first:first + batch_size]
        tiles = np.stack([image[y:y + tile_h, x:x + tile_w] for y, x in batch]).transpose(0, 3, 1, 2)
        for (y, x), tile_probs in zip(batch, bundle.predict(tiles.astype(np.float32))):
            probs[:, y:y + tile_h, x:x + tile_w] += tile_probs * window
            weights[y:y + tile_h, x:x + tile_w] += window
    return (probs / weights)[:, :height, :width]


def blend_window(size: int, ramp: int) -> np.ndarray:
    """Weights along one tile axis: 1 in the middle, falling linearly over `ramp` pixels to 0.5/ramp at both ends.

    Never 0, so a pixel that only an edge of a tile covers (the image border) keeps that tile's
    prediction; where two tiles overlap by `ramp` pixels the weights sum to 1, a linear cross-fade.
    """
    if ramp == 0:
        return np.ones(size, np.float32)
    centres = np.arange(size) + 0.5
    return np.minimum(1.0, np.minimum(centres, size - centres) / ramp).astype(np.float32)


def read_image(path: Path, channels: int) -> np.ndarray:
    """(H, W, C) uint8 decoded as in training (segtune.data.decode); a channel count the bundle cannot take is an error."""
    image = decode_image(path)
    if image.shape[2] != channels:
        read_as = "RGB" if image.shape[2] == 3 else "grayscale"
        raise ValueError(f"{image.shape[2]} channel(s) ({read_as}) but the bundle takes in_channels={channels}; "
                         f"convert the image to {'grayscale (L)' if channels == 1 else 'RGB'} first")
    return image


def output_files(folder: Path, stem: str, probabilities: bool) -> tuple[Path, ...]:
    """What write_prediction writes for an image named <stem>.*: index map, colour map, probabilities."""
    files = (folder / f"{stem}.png", folder / f"{stem}_colour.png")
    return (*files, folder / f"{stem}_probs.npy") if probabilities else files


def write_prediction(probs: np.ndarray, palette: np.ndarray, folder: Path, stem: str, probabilities: bool) -> None:
    classes = probs.argmax(0).astype(np.uint8)
    files = output_files(folder, stem, probabilities)
    Image.fromarray(classes).save(files[0])
    Image.fromarray(palette[classes]).save(files[1])
    if probabilities:
        np.save(files[2], probs.astype(np.float16))


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    files = _input_files(args.input, args.output, args.probabilities)
    if args.batch_size < 1:
        raise SystemExit(f"segtune predict: --batch-size {args.batch_size} must be at least 1")
    try:
        bundle = load_bundle(args.bundle, args.runtime, args.device)
    except BundleError as error:
        raise SystemExit(f"segtune predict: {error}") from None
    if len(bundle.manifest["classes"]) > 256:
        raise SystemExit(f"segtune predict: {args.bundle} has {len(bundle.manifest['classes'])} classes; "
                         "index PNGs hold at most 256")
    if bundle.manifest["sha256"] is None:
        print(f"note: bundle {args.bundle} carries no checksums (exported before segtune recorded them), so its "
              "files were not verified; re-export it to add them")
    scale = bundle.manifest["input_scale"]
    if scale is not None:
        print(f"images are resized to {scale['resize'][0]}x{scale['resize'][1]} as in training; the outputs "
              "have each image's own size")
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
            probs = predict_image(bundle, read_image(file, bundle.manifest["in_channels"]), args.batch_size)
            write_prediction(probs, palette, args.output, file.stem, args.probabilities)
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


def _input_files(path: Path, output: Path, probabilities: bool) -> list[Path]:
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
        clash = next((out for out in output_files(output, file.stem, probabilities) if out.resolve() in inputs), None)
        if clash:
            raise SystemExit(f"segtune predict: the prediction {clash} would overwrite the input image of that name; "
                             "choose another OUTPUT folder")
    return files
