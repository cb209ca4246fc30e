"""Readers for the three dataset formats; every problem is collected and raised once.

- index folder: images/, masks/ (single-channel class indices), classes.json, optional splits/*.txt
- colour folder: images/, masks/ (RGB colour masks) and a colour -> class map from the config
  (without one: a single ColourMasksWithoutMap pointing at `segtune inspect`, which lists the colours)
- NPZ: one (N, 2, H, W) array of image/mask pairs (grayscale), or (N, H, W) arrays named images and masks

Which files make a folder dataset (folders in any case, images and masks paired by name, split files):
segtune.data.layout.
Images are decoded by segtune.data.decode (the same rules as `segtune predict`); masks must be lossless.
"""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import numpy as np

from segtune.data.classes import check_classes, read_classes
from segtune.data.decode import TURNED, decode_image, open_image, orientation, upright
from segtune.data.errors import ColourMasksWithoutMap, DataError
from segtune.data.layout import aliases, dataset_folder, list_images, other_folders, pair_by_suffix, read_splits
from segtune.data.lossy import LOSSLESS_ADVICE, colour_mask_lossiness, index_mask_lossiness
from segtune.data.resize import resize_image, resize_mask
from segtune.data.segmentation_data import SegmentationData, default_palette
from segtune.data.synthetic import make_synthetic

_COLOUR_MODES = {"RGB", "RGBA", "RGBX"}
"""PIL modes of colour masks; palette ('P') masks are read as class indices unless a colour_map is set."""


def load_dataset(path: str, *, classes: tuple[str, ...] | None = None,
                 colour_map: dict[str, int] | None = None, ignore_index: int | None = 255,
                 resize: tuple[int, int] | None = None) -> SegmentationData:
    """Read `path` (a folder, an .npz file, or "synthetic") into memory, resized to `resize` (H, W)."""
    if str(path) == "synthetic":
        return _resize_all(make_synthetic(), resize)
    root = Path(path).expanduser()
    if isinstance(classes, str):
        raise DataError(str(root), [("classes", f"{classes!r} must be a list of class names, e.g. [background, crop, weed]")])
    if colour_map is not None and not isinstance(colour_map, dict):
        raise DataError(str(root), [("colour_map", f"must be a mapping 'R,G,B': class index, got a "
                                                   f"{type(colour_map).__name__}: {str(colour_map)[:80]}")])
    if not root.exists():
        raise DataError(str(root), [(str(root), "does not exist; pass a dataset folder, an .npz file or 'synthetic'")])
    if root.suffix == ".npz":
        return _read_npz(root, classes, ignore_index, resize)
    if not root.is_dir():
        raise DataError(str(root), [(str(root), "is neither a folder nor an .npz file")])
    if colour_map:
        return _read_folder(root, classes, _parse_colour_map(colour_map, root), ignore_index, resize)
    return _read_folder(root, classes, None, ignore_index, resize)


def _parse_colour_map(colour_map: dict[str, int], root: Path) -> dict[tuple[int, int, int], int]:
    parsed, problems = {}, []
    for key, value in colour_map.items():
        try:
            rgb = tuple(int(v) for v in str(key).replace(" ", "").split(","))
            rgb = rgb * 3 if len(rgb) == 1 else rgb  # 'V': a grey value, for single-channel masks
            if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
                raise ValueError
        except ValueError:
            problems.append(("colour_map", f"key {key!r} is not 'R,G,B' (or one grey value 'V') with values 0-255"))
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(("colour_map", f"{key!r} maps to {value!r}, not a class index"))
        else:
            parsed[rgb] = value
    if problems:
        raise DataError(str(root), problems)
    return parsed


def _check_colour_map(colour_map, num_classes, ignore_index, root) -> None:
    bad = [f"{','.join(map(str, rgb))} -> {c}" for rgb, c in colour_map.items()
           if not 0 <= c < num_classes and c != ignore_index]
    if bad:
        raise DataError(str(root), [("colour_map", f"maps colours to classes out of range 0..{num_classes - 1} "
                                                   f"(ignore index {ignore_index}): {bad[:5]}; use indices of the classes")])


def _read_folder(root, classes, colour_map, ignore_index, resize) -> SegmentationData:
    image_dir, mask_dir = dataset_folder(root, "images"), dataset_folder(root, "masks")
    problems = [(str(d), "folder missing" + other_folders(root, d)) for d in (image_dir, mask_dir) if not d.is_dir()]
    if problems:
        raise DataError(str(root), problems)
    image_files, mask_files = pair_by_suffix(list_images(image_dir, problems), list_images(mask_dir, problems))
    if colour_map is None:
        _refuse_colour_masks(root, mask_dir, mask_files)
    names, ignore_index, palette = read_classes(root, classes, colour_map, ignore_index)
    if colour_map is not None:
        _check_colour_map(colour_map, len(names), ignore_index, root)
    if not image_files:
        raise DataError(str(root), [(str(image_dir), "holds no images (png, jpg, tif, bmp)")])
    problems += [(str(image_files[s]), "missing mask: no file with this name in masks/") for s in image_files if s not in mask_files]
    problems += [(str(mask_files[s]), "mask has no image in images/") for s in mask_files if s not in image_files]
    images, masks, ids = [], [], []
    for stem in sorted(set(image_files) & set(mask_files)):
        pair = _read_pair(image_files[stem], mask_files[stem], len(names), colour_map, ignore_index, resize, problems)
        if pair is not None:
            images.append(pair[0]), masks.append(pair[1]), ids.append(stem)
    _check_channels(images, ids, image_files, problems)
    if problems:
        raise DataError(str(root), problems)
    _refuse_one_class(masks, names, ignore_index, root, str(mask_dir))
    return SegmentationData(images, masks, ids, names, ignore_index, palette,
                            read_splits(root, aliases(ids, image_files, mask_files)), str(root))


def _refuse_colour_masks(root: Path, mask_dir: Path, mask_files: dict[str, Path]) -> None:
    """Masks mostly RGB and no colour_map: one error pointing at `segtune inspect`, before any mask is decoded."""
    colour = [path for path in mask_files.values() if _mode(path) in _COLOUR_MODES]
    if 2 * len(colour) > len(mask_files):
        raise ColourMasksWithoutMap(str(root), str(mask_dir), colour, len(mask_files))


def _mode(path: Path) -> str | None:
    """The PIL mode in a file's header (nothing decoded); None when unreadable (reported when the pair is read)."""
    try:
        with open_image(path) as picture:
            return picture.mode
    except (OSError, ValueError):
        return None


def _read_pair(image_path, mask_path, num_classes, colour_map, ignore_index, resize, problems):
    decoded = []
    for path, read in ((image_path, decode_image), (mask_path, lambda p: _read_mask(p, colour_map))):
        try:
            decoded.append(read(path))
        except OSError as error:   # PIL's UnidentifiedImageError and truncated files
            problems.append((str(path), f"unreadable: {error}"))
        except ValueError as error:   # a mode, size or mask format refused with its reason
            problems.append((str(path), str(error)))
    if len(decoded) < 2:
        return None
    image, mask = decoded
    if image.shape[:2] != mask.shape[:2]:
        problems.append((str(mask_path), f"size {mask.shape[1]}x{mask.shape[0]} differs from its image's {image.shape[1]}x"
                                         f"{image.shape[0]}" + _turned_hint(image_path, image.shape, mask.shape)))
        return None
    if colour_map is not None:
        mask = _colours_to_indices(mask, colour_map, mask_path, problems)
    elif mask.ndim != 2:
        problems.append((str(mask_path), f"has {mask.shape[2]} channels; index masks are single-channel (or set colour_map for colour masks)"))
        return None
    elif lossy := index_mask_lossiness(mask, {*range(num_classes), ignore_index}):
        problems.append((str(mask_path), lossy))
        return None
    if mask is None or not _check_indices(mask, num_classes, ignore_index, mask_path, problems):
        return None
    return _resize(image, mask.astype(np.uint8), resize)


def _turned_hint(image_path, image_shape, mask_shape) -> str:
    """Why a mask may be the image's size turned: the image's EXIF orientation, which reading upright applies."""
    with open_image(image_path) as stored:
        turn = orientation(stored)
    if turn in TURNED and mask_shape[:2] == image_shape[1::-1]:
        return (f" as stored: the image's EXIF orientation ({turn}) turns it by 90 degrees, and segtune reads images "
                "upright, as viewers and annotation tools show them; turn the mask the same way, or remove the tag "
                "from the image (exiftool -Orientation= FILE)")
    return ""


def _read_mask(path: Path, colour_map) -> np.ndarray:
    if path.suffix.lower() in (".jpg", ".jpeg"):
        raise ValueError(f"a mask saved as JPEG, whose compression changes labels along every edge; {LOSSLESS_ADVICE}")
    with open_image(path) as stored:
        picture = upright(stored)
        if colour_map is not None and picture.mode == "P":
            picture = picture.convert("RGB")  # palette ('P') PNGs are colour masks too
        return np.asarray(picture)


def _colours_to_indices(mask, colour_map, mask_path, problems):
    if mask.ndim == 2 and all(r == g == b for r, g, b in colour_map):  # grey values 'V' on single-channel masks
        mask = np.repeat(mask[..., None], 3, axis=2)
    elif mask.ndim != 3:
        problems.append((str(mask_path), "is single-channel but colour_map has colours that are not grey; map its "
                                         "values as grey keys ('0': 0, '255': 1)"))
        return None
    packed = (mask[..., 0].astype(np.int64) << 16) | (mask[..., 1].astype(np.int64) << 8) | mask[..., 2]
    lookup = {(r << 16) | (g << 8) | b: c for (r, g, b), c in colour_map.items()}
    colours, inverse, counts = np.unique(packed, return_inverse=True, return_counts=True)
    unknown = np.array([int(c) not in lookup for c in colours], bool)
    if unknown.any():
        rgb = np.stack([colours[unknown] >> 16, (colours[unknown] >> 8) & 255, colours[unknown] & 255], axis=1)
        shown = ", ".join(f"({r},{g},{b})" for r, g, b in rgb[:5])
        problems.append((str(mask_path), colour_mask_lossiness(rgb, counts[unknown], np.array(list(colour_map)))
                         or f"colour(s) not in colour_map: {shown}; add them to colour_map"))
        return None
    return np.array([lookup[int(c)] for c in colours], dtype=np.uint8)[inverse].reshape(packed.shape)


def _check_indices(mask, num_classes, ignore_index, where, problems) -> bool:
    values = np.unique(mask)
    bad = [int(v) for v in values if (v < 0 or v >= num_classes) and v != ignore_index]
    if bad:
        problems.append((str(where), f"class index {bad[:5]} out of range 0..{num_classes - 1}"
                         + (f" (ignore index {ignore_index})" if ignore_index is not None else "")
                         + (f"; binary masks saved as 0/255? {BINARY_ADVICE}" if bad == [255] and num_classes == 2 else "")))
        return False
    return True


BINARY_ADVICE = ("read 255 as class 1 with colour_map {\"0\": 0, \"255\": 1} (flag: --colour-map \"0=0;255=1\"), "
                 "or save the masks with values 0 and 1")


def _refuse_one_class(masks, names, ignore_index, root, mask_dir: str) -> None:
    """Every labelled pixel of the dataset in one class: nothing to segment. Masks saved as 0/255 with 255 the
    ignore index look like this (the objects are all left out), and get the fix named."""
    counts = sum(np.bincount(m.ravel(), minlength=256) for m in masks)
    labelled = [c for c in range(len(names)) if counts[c]]
    if len(labelled) != 1:
        return
    only = labelled[0]
    why = f"every labelled pixel is class {only} ({names[only]!r}): the masks hold no other class"
    if ignore_index is not None and counts[ignore_index]:
        share = counts[ignore_index] / counts.sum()
        why += (f", and {share:.1%} of pixels hold {ignore_index}, the ignore_index, left out of training and scoring"
                + (f"; binary masks saved as 0/{ignore_index}? {BINARY_ADVICE}" if ignore_index == 255 else
                   "; map those pixels to a class, or set ignore_index to a value the masks do not use"))
    else:
        why += "; check the masks, and that the classes are listed in index order"
    raise DataError(str(root), [(mask_dir, why)])


def _check_channels(images, ids, files, problems):
    channels = {im.shape[2] for im in images}
    if len(channels) > 1:
        majority = max(channels, key=lambda c: sum(im.shape[2] == c for im in images))
        kind = {1: "grayscale", 3: "RGB"}
        problems += [(str(files[i]), f"is {kind[im.shape[2]]} ({im.shape[2]} channel(s)) while most images are "
                                     f"{kind[majority]}; save it as {kind[majority]} like the rest (a model takes one "
                                     "number of channels)")
                     for i, im in zip(ids, images) if im.shape[2] != majority]


def _resize_all(data: SegmentationData, size) -> SegmentationData:
    """Every image and mask of data resized to size (H, W); data itself for None."""
    if size is None:
        return data
    pairs = [_resize(image, mask, size) for image, mask in zip(data.images, data.masks)]
    return dataclasses.replace(data, images=[image for image, _ in pairs], masks=[mask for _, mask in pairs])


def _resize(image, mask, size):
    if size is None:
        return image, mask
    return resize_image(image, size), resize_mask(mask, size)


NPZ_IMAGES, NPZ_MASKS = ("images", "image", "imgs", "x"), ("masks", "mask", "labels", "label", "y")
"""Names (any case) of the two (N, H, W) arrays an NPZ may hold instead of one (N, 2, H, W) array."""


def _images_and_masks(arrays: dict) -> tuple[np.ndarray, str] | None:
    """The (N, 2, H, W) stack of an NPZ's images and masks arrays, with where its masks are; None without them."""
    image_key = next((k for k in arrays if k.lower() in NPZ_IMAGES), None)
    mask_key = next((k for k in arrays if k.lower() in NPZ_MASKS), None)
    if image_key is None or mask_key is None or arrays[image_key].ndim != 3 \
            or arrays[image_key].shape != arrays[mask_key].shape:
        return None
    return np.stack([arrays[image_key], arrays[mask_key]], axis=1), mask_key


def _read_npz(path, classes, ignore_index, resize) -> SegmentationData:
    try:
        archive = np.load(path)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("it holds one bare array (a .npy file renamed .npz?)")
        with archive:
            arrays = {k: archive[k] for k in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(str(path), [(str(path), f"unreadable npz: {error}; save the pairs with "
                                                "numpy.savez(path, pairs=array)")]) from None
    pairs = [k for k, a in arrays.items() if a.ndim == 4 and a.shape[1] == 2]
    apart = _images_and_masks(arrays) if not pairs else None
    if len(pairs) != 1 and apart is None:
        shapes = ", ".join(f"{k}{a.shape}" for k, a in arrays.items()) or "no arrays"
        raise DataError(str(path), [(str(path), f"needs exactly one (N, 2, H, W) image/mask array, or (N, H, W) arrays "
                                                f"named images and masks, found {shapes}; save only the one to train on: "
                                                "numpy.savez(path, pairs=array)")])
    stack, masks_at = (arrays[pairs[0]], f"{path}[{pairs[0]}][:, 1]") if pairs else (apart[0], f"{path}[{apart[1]}]")
    raw_masks = stack[:, 1]
    if not np.allclose(raw_masks, np.round(raw_masks)):
        raise DataError(str(path), [(masks_at, "mask channel holds non-integer values")])
    masks = raw_masks.round().astype(np.int64)
    labelled = masks[masks != (ignore_index if ignore_index is not None else -1)]
    if labelled.size == 0:
        raise DataError(str(path), [(masks_at, "every mask pixel is the ignore index; nothing to learn")])
    names = tuple(classes) if classes else tuple(f"class_{i}" for i in range(int(labelled.max()) + 1))
    check_classes(names, "option classes" if classes else f"option classes (unset: mask values give {list(names)})",
                   ignore_index, "option ignore_index", str(path))
    problems = []
    images, out_masks, ids = [], [], []
    scale = 255.0 if stack[:, 0].max() <= 1.0 and np.issubdtype(stack.dtype, np.floating) else 1.0
    for i in range(len(stack)):
        if _check_indices(masks[i], len(names), ignore_index, f"{path}[{i}]", problems):
            image = np.clip(stack[i, 0] * scale, 0, 255).astype(np.uint8)[:, :, None]
            image, mask = _resize(image, masks[i].astype(np.uint8), resize)
            images.append(image), out_masks.append(mask), ids.append(f"{i:05d}")
    if problems:
        raise DataError(str(path), problems)
    _refuse_one_class(out_masks, names, ignore_index, path, masks_at)
    return SegmentationData(images, out_masks, ids, names, ignore_index, default_palette(len(names)), {}, str(path))
