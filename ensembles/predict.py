"""Segment images of any size with an exported bundle: `segtune predict BUNDLE INPUT OUTPUT`.

    segtune predict bundle/ photo.jpg predictions/
    segtune predict bundle/ images/ predictions/ --runtime onnx --batch-size 8 --probabilities

For each image writes <stem>.png (class index per pixel), <stem>_colour.png (the manifest's palette)
and with --probabilities <stem>_probs.npy (float16, K x H x W). Images are cut into overlapping
tiles of the bundle's size, and the tiles' probabilities are blended with weights that fall off
towards tile edges, so no seams show where tiles meet.
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

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_READ_AS = {"L": "L", "1": "L", "LA": "L", "RGB": "RGB", "RGBA": "RGB", "RGBX": "RGB", "P": "RGB", "PA": "RGB",
            "CMYK": "RGB", "YCbCr": "RGB"}
"""8-bit PIL modes and what they are read as: alpha is dropped, palettes and other colour spaces become RGB."""


def predict_image(bundle, image: np.ndarray, batch_size: int = 4) -> np.ndarray:
    """Class probabilities (K, H, W) float32 of an (H, W, C) uint8 image of any size, tile by tile."""
    manifest = bundle.manifest
    (tile_h, tile_w), channels = manifest["tile"], manifest["in_channels"]
    image = image[..., None] if image.ndim == 2 else image
    if image.ndim != 3 or image.shape[2] != channels:
        raise ValueError(f"image of shape {image.shape} has {image.shape[-1]} channel(s), the bundle takes "
                         f"{channels}; convert it to {'grayscale' if channels == 1 else f'{channels} channels (RGB)'}")
    height, width = image.shape[:2]
    # Images smaller than a tile are mirrored out to one tile; larger ones end on a tile flush with the edge.
    image = np.pad(image, ((0, max(0, tile_h - height)), (0, max(0, tile_w - width)), (0, 0)), mode="reflect")
    ramp_h, ramp_w = (min(round(size * manifest["overlap"]), size - 1) for size in (tile_h, tile_w))
    window = np.outer(blend_window(tile_h, ramp_h), blend_window(tile_w, ramp_w))
    corners = [(y, x) for y in _tile_starts(image.shape[0], tile_h, tile_h - ramp_h)
               for x in _tile_starts(image.shape[1], tile_w, tile_w - ramp_w)]
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


def _tile_starts(length: int, tile: int, stride: int) -> list[int]:
    starts = list(range(0, length - tile + 1, stride))
    return starts if starts[-1] == length - tile else [*starts, length - tile]


def read_image(path: Path, channels: int) -> np.ndarray:
    """(H, W, C) uint8: grayscale stays one channel, RGB three; anything else that cannot match is an error."""
    with Image.open(path) as opened:
        if opened.mode not in _READ_AS:
            raise ValueError(f"mode {opened.mode} (16-bit or float) is not read; convert it to 8-bit grayscale or RGB")
        image = np.asarray(opened.convert(_READ_AS[opened.mode]))
    image = image[..., None] if image.ndim == 2 else image
    if image.shape[2] != channels:
        raise ValueError(f"{image.shape[2]} channel(s) ({opened.mode}) but the bundle takes in_channels={channels}; "
                         f"convert the image to {'grayscale (L)' if channels == 1 else 'RGB'} first")
    return image


def write_prediction(probs: np.ndarray, palette: np.ndarray, folder: Path, stem: str, probabilities: bool) -> None:
    classes = probs.argmax(0).astype(np.uint8)
    Image.fromarray(classes).save(folder / f"{stem}.png")
    Image.fromarray(palette[classes]).save(folder / f"{stem}_colour.png")
    if probabilities:
        np.save(folder / f"{stem}_probs.npy", probs.astype(np.float16))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segtune predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path, help="bundle folder written by export_bundle (holds manifest.json)")
    parser.add_argument("input", type=Path, help=f"an image or a folder of images ({', '.join(IMAGE_SUFFIXES)})")
    parser.add_argument("output", type=Path, help="folder for the predictions (created if missing)")
    parser.add_argument("--runtime", choices=tuple(MODEL_FILES), default="torchscript",
                        help="network to run (default torchscript)")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto",
                        help="auto uses a GPU when the runtime sees one (default auto)")
    parser.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass (default 4)")
    parser.add_argument("--probabilities", action="store_true", help="also write <stem>_probs.npy (float16, K x H x W)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    files = _input_files(args.input, args.output)
    if args.batch_size < 1:
        raise SystemExit(f"segtune predict: --batch-size {args.batch_size} must be at least 1")
    try:
        bundle = load_bundle(args.bundle, args.runtime, args.device)
    except BundleError as error:
        raise SystemExit(f"segtune predict: {error}") from None
    if len(bundle.manifest["classes"]) > 256:
        raise SystemExit(f"segtune predict: {args.bundle} has {len(bundle.manifest['classes'])} classes; "
                         "index PNGs hold at most 256")
    args.output.mkdir(parents=True, exist_ok=True)
    palette = np.array(bundle.manifest["palette"], np.uint8)
    written, failed, started = set(), [], time.perf_counter()
    for file in tqdm(files, unit="image", disable=not sys.stderr.isatty()):
        try:
            if file.stem in written:
                raise ValueError(f"another image named {file.stem}.* was written to {args.output} already; rename one")
            probs = predict_image(bundle, read_image(file, bundle.manifest["in_channels"]), args.batch_size)
            write_prediction(probs, palette, args.output, file.stem, args.probabilities)
            written.add(file.stem)
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            failed.append(file)
            tqdm.write(f"segtune predict: {file}: {error}", file=sys.stderr)
    seconds = time.perf_counter() - started
    print(f"written {len(written)}, failed {len(failed)} in {seconds:.1f} s ({len(written) / seconds:.2f} images/s) "
          f"to {args.output}" + (f"; failed: {', '.join(f.name for f in failed)}" if failed else ""))
    return 1 if failed else 0


def _input_files(path: Path, output: Path) -> list[Path]:
    """The images to segment; a missing input, an empty folder or an output that would overwrite inputs stops here."""
    if not path.exists():
        raise SystemExit(f"segtune predict: INPUT {path} does not exist; pass an image file or a folder of images")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"segtune predict: INPUT folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    if output.resolve() == path.resolve():
        raise SystemExit(f"segtune predict: OUTPUT {output} is the INPUT folder; <stem>.png would overwrite "
                         "input images, choose another folder")
    return files
