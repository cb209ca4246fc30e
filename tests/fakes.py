"""Tiny on-disk datasets for tests, written with PIL/numpy into a tmp folder.

Every maker draws the same hand-checkable layout so that tests can state exact expectations.
For an image of size (H, W), with third = W // 3:

    mask columns [0, third)          -> class 0 (background)
    mask columns [third, 2 * third)  -> class 1 (crop)
    mask columns [2 * third, W)      -> class 2 (weed)
    mask[0:2, 0:2]                   -> IGNORE (255), index folders and npz only

Image i has pixel value  image_value(i, cls)  = 10 * i + 50 * cls  in every channel,
so a test can tell images apart and check that pixels line up with their mask.

Colour folders use the same layout, painted with the colours of COLOUR_MAP; the bottom half of
the background third is painted ORANGE (also class 0) so two colours map to one class.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from segtune.data import SegmentationData

CLASSES = ("background", "crop", "weed")
IGNORE = 255

BLACK, ORANGE, WHITE, RED = (0, 0, 0), (255, 128, 0), (255, 255, 255), (216, 67, 82)
COLOUR_MAP = {"255,255,255": 1, "216,67,82": 2, "0,0,0": 0, "255,128,0": 0}
CLASS_COLOURS = {0: BLACK, 1: WHITE, 2: RED}


def image_id(i: int) -> str:
    return f"img_{i:02d}"


def image_value(i: int, cls: int) -> int:
    """The grey level image i holds over pixels of class `cls`."""
    return 10 * i + 50 * cls


def class_layout(size: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 class-index mask: three vertical bands 0 | 1 | 2 (no ignore pixels)."""
    height, width = size
    third = width // 3
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[:, third:2 * third] = 1
    mask[:, 2 * third:] = 2
    return mask


def index_mask(size: tuple[int, int], with_ignore: bool = True) -> np.ndarray:
    mask = class_layout(size)
    if with_ignore:
        mask[0:2, 0:2] = IGNORE
    return mask


def image_for(i: int, size: tuple[int, int], channels: int = 3) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8 image whose grey level follows the class layout (ignore -> class 0)."""
    grey = (10 * i + 50 * class_layout(size).astype(np.int64)).astype(np.uint8)
    return grey if channels == 1 else np.repeat(grey[:, :, None], 3, axis=2)


def colour_mask(size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 RGB mask: black/orange background, white crop, red weed."""
    layout = class_layout(size)
    rgb = np.zeros(size + (3,), dtype=np.uint8)
    for cls, colour in CLASS_COLOURS.items():
        rgb[layout == cls] = colour
    height, width = size
    rgb[height // 2:, : width // 3] = ORANGE
    return rgb


def write_png(path: Path, array: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def write_garbage(path: Path, data: bytes = b"this is not an image at all\x00\x01\x02") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_splits(root: Path, splits: dict[str, list[str]]) -> None:
    folder = Path(root) / "splits"
    folder.mkdir(parents=True, exist_ok=True)
    for name, ids in splits.items():
        (folder / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))


def default_splits(n: int) -> dict[str, list[str]]:
    """train = all but the last two, val = second to last, test = last."""
    ids = [image_id(i) for i in range(n)]
    return {"train": ids[:-2], "val": ids[-2:-1], "test": ids[-1:]}


def write_index_folder(root, n: int = 6, size: tuple[int, int] = (32, 48), channels: int = 3,
                       with_splits: bool | dict[str, list[str]] = False,
                       classes: tuple[str, ...] | None = CLASSES,
                       ignore_index: int | None = IGNORE, with_ignore_pixels: bool = True) -> Path:
    """images/img_XX.png, masks/img_XX.png (class indices), classes.json, optional splits/*.txt.

    with_splits: True writes default_splits(n); a dict writes exactly those lists.
    classes=None writes no classes.json.
    """
    root = Path(root)
    for i in range(n):
        write_png(root / "images" / f"{image_id(i)}.png", image_for(i, size, channels))
        write_png(root / "masks" / f"{image_id(i)}.png", index_mask(size, with_ignore_pixels))
    if classes is not None:
        (root / "classes.json").write_text(json.dumps({"names": list(classes), "ignore_index": ignore_index}))
    if with_splits:
        write_splits(root, default_splits(n) if with_splits is True else with_splits)
    return root


def write_colour_folder(root, n: int = 6, size: tuple[int, int] = (32, 48), channels: int = 3,
                        folders: tuple[str, str] = ("images", "masks")) -> Path:
    """images/img_XX.png and masks/img_XX.png as RGB colour masks (see COLOUR_MAP); no classes.json.

    folders: the two folders' names as a user's data may spell them, e.g. ("Images", "Masks").
    """
    root = Path(root)
    for i in range(n):
        write_png(root / folders[0] / f"{image_id(i)}.png", image_for(i, size, channels))
        write_png(root / folders[1] / f"{image_id(i)}.png", colour_mask(size))
    return root


def write_lossy_colour_folder(root, n: int = 3, size: tuple[int, int] = (64, 96), quality: int = 75) -> Path:
    """images/ (texture pictures) and masks/: black/white/red colour masks of irregular blobs, JPEG-compressed
    at `quality` and saved as PNG, as masks that went through a lossy export come."""
    import io

    root = Path(root)
    lookup = np.array([CLASS_COLOURS[c] for c in range(3)], np.uint8)
    for i in range(n):
        picture = texture(i, size)
        buffer = io.BytesIO()
        Image.fromarray(lookup[texture_mask(picture)]).save(buffer, format="JPEG", quality=quality)
        write_png(root / "images" / f"{image_id(i)}.png", picture)
        write_png(root / "masks" / f"{image_id(i)}.png", np.asarray(Image.open(buffer).convert("RGB")))
    return root


def npz_stack(n: int = 6, size: tuple[int, int] = (16, 32), dtype=np.uint8) -> np.ndarray:
    """(N, 2, H, W): channel 0 the grey image, channel 1 the class-index mask (with ignore pixels)."""
    stack = np.zeros((n, 2) + tuple(size), dtype=dtype)
    for i in range(n):
        stack[i, 0] = image_for(i, size, channels=1)
        stack[i, 1] = index_mask(size)
    return stack


def write_npz(path, n: int = 6, size: tuple[int, int] = (16, 32), array: np.ndarray | None = None,
              key: str = "pairs") -> Path:
    """An .npz holding one (N, 2, H, W) array under `key` (or the given `array`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{key: npz_stack(n, size) if array is None else array})
    return path


def make_segmentation_data(present: list[set[int]], classes=("background", "a", "b", "rare"),
                           size: tuple[int, int] = (8, 8), splits: dict[str, list[str]] | None = None,
                           ignore_index: int | None = None) -> SegmentationData:
    """In-memory data where image i contains exactly the classes in present[i] (class 0 fills the rest)."""
    images, masks, ids = [], [], []
    for i, classes_here in enumerate(present):
        mask = np.zeros(size, dtype=np.uint8)
        for k, cls in enumerate(sorted(c for c in classes_here if c != 0)):
            mask.flat[k] = cls
        images.append(np.full(size + (3,), 10 * (i % 20), dtype=np.uint8))
        masks.append(mask)
        ids.append(f"s{i:03d}")
    return SegmentationData(images, masks, ids, tuple(classes), ignore_index,
                            splits=dict(splits or {}), source="fake")


# --------------------------------------------------------------------------- inspection fixture

INSPECT_IDS = [image_id(i) for i in range(12)]
NEAR_DUPLICATE = ("img_02", "img_05")
"""img_05 is img_02 brightened by 12 grey levels with Gaussian noise (sigma 3); its mask differs in one pixel."""
REPEATED_MASK = ("img_07", "img_08", "img_09")
"""Three different images carrying byte-for-byte the same mask (img_07's)."""
OUTLIER = "img_10"
"""An all-white image."""
INSPECT_SPLITS = {"train": ["img_00", "img_01", "img_02", "img_03", "img_04", "img_06", "img_07", "img_08", "img_09"],
                  "val": ["img_10"], "test": ["img_05", "img_11"]}
"""Split files that put the near-duplicate pair across train (img_02) and test (img_05)."""


def texture(i: int, size: tuple[int, int] = (64, 64)) -> np.ndarray:
    """(H, W, 3) uint8 smooth random picture, different for every i: an 8 x 8 random grid, upsampled."""
    rng = np.random.default_rng(1000 + i)
    channels = [np.asarray(Image.fromarray(rng.integers(0, 256, (8, 8)).astype(np.uint8)).resize(size[::-1], Image.BICUBIC))
                for _ in range(3)]
    return np.stack(channels, axis=2)


def texture_mask(picture: np.ndarray) -> np.ndarray:
    """Classes from the first channel's quantiles: 0 below the median, 1 up to the 85th percentile, 2 above."""
    grey = picture[:, :, 0].astype(np.float64)
    low, high = np.quantile(grey, [0.5, 0.85])
    return ((grey > low).astype(np.uint8) + (grey > high)).astype(np.uint8)


def plants_on_one_soil(count: int, size: int = 128) -> list[np.ndarray]:
    """(size, size, 3) uint8 field photos: one soil texture under one lamp, three different plants on each.

    The plants (green discs) are about as bright as the soil, so the grey pictures differ little: the
    perceptual hashes of several different photos lie 38-48 bits apart, as close as CamVid's frames a second apart.
    """
    y, x = np.mgrid[0:size, 0:size]
    lamp = 150 - 70 * ((x / size - 0.3) ** 2 + (y / size - 0.4) ** 2)
    soil = lamp + np.random.default_rng(99).normal(0, 12, (size, size))
    photos = []
    for i in range(count):
        picture = np.stack([soil * 0.9, soil * 0.75, soil * 0.6], axis=2)
        for cy, cx, r in np.random.default_rng(i).integers((10, 10, 4), (size - 10, size - 10, 9), (3, 3)):
            picture[(y - cy) ** 2 + (x - cx) ** 2 <= r * r] = (40, 160, 40)
        photos.append(np.clip(picture, 0, 255).astype(np.uint8))
    return photos


def write_inspection_folder(root, size: tuple[int, int] = (64, 64)) -> Path:
    """12 index-mask images with NEAR_DUPLICATE, REPEATED_MASK and OUTLIER planted and INSPECT_SPLITS."""
    root = Path(root)
    images = [texture(i, size) for i in range(12)]
    masks = [texture_mask(image) for image in images]
    noise = np.random.default_rng(7).normal(0, 3, images[2].shape)
    images[5] = np.clip(images[2].astype(np.float64) + 12 + noise, 0, 255).astype(np.uint8)
    masks[5] = masks[2].copy()
    masks[5][0, 0] = 2 if masks[5][0, 0] != 2 else 0
    masks[8], masks[9] = masks[7].copy(), masks[7].copy()
    images[10] = np.full_like(images[10], 255)
    for name, image, mask in zip(INSPECT_IDS, images, masks):
        write_png(root / "images" / f"{name}.png", image)
        write_png(root / "masks" / f"{name}.png", mask)
    (root / "classes.json").write_text(json.dumps({"names": list(CLASSES), "ignore_index": IGNORE}))
    write_splits(root, INSPECT_SPLITS)
    return root


def write_png_claiming(path, width: int, height: int) -> Path:
    """A 1x1 grey PNG whose header (IHDR) claims width x height pixels: a decompression bomb, cheaply."""
    import struct
    import zlib

    path = Path(path)
    write_png(path, np.zeros((1, 1), np.uint8))
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)        # IHDR data starts after signature, length and type
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


# --------------------------------------------------------------------------- dummy trainable

BROKEN_ENCODER = "tu-no_such_encoder"
"""A trial given this encoder fails, as the real trainable does when timm has no such encoder."""


def dummy_trainable():
    """A stand-in for train_segmentation, for run_search(cfg, trainable=dummy_trainable()): no model, milliseconds.

    Each epoch reports a made-up val mIoU that rises with the epoch towards a ceiling set by the config (lr near
    1e-2 and the dice loss score best) and saves a checkpoint (epoch.json); it resumes from Tune's checkpoint.
    Returned as a closure so Ray pickles it by value: the workers cannot import tests/.
    """
    def made_up_trial(config: dict, data, splits, fixed) -> None:
        import json
        import math
        import tempfile
        from pathlib import Path

        from ray import tune

        from segtune import names

        if config["encoder"] == BROKEN_ENCODER:
            raise ValueError(f"encoder {config['encoder']} not found")
        ceiling = 0.9 - 0.4 * abs(math.log10(config["lr"] / 1e-2)) - 0.1 * (config["loss"] == "cross_entropy")
        checkpoint = tune.get_checkpoint()
        start = 1
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                start = json.loads((Path(folder) / "epoch.json").read_text())["epoch"] + 1
        for epoch in range(start, fixed["max_epochs"] + 1):
            miou = ceiling * (1 - 0.5 ** epoch)
            with tempfile.TemporaryDirectory() as folder:
                (Path(folder) / "epoch.json").write_text(json.dumps({"epoch": epoch}))
                tune.report({names.EPOCH: epoch, names.VAL_MIOU: miou, names.BEST_VAL_MIOU: miou},
                            checkpoint=tune.Checkpoint.from_directory(folder))

    return made_up_trial


def sample_space(space, count: int = 40, seed: int = 3):
    """`count` configs of a space as trials see them (sampled parameters and constants, by field name), drawn by a
    seeded random sampler."""
    import optuna

    from spaces.overrides import field_name
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(count):
        trial = study.ask()
        constants = space(trial) or {}
        yield {field_name(k): v for k, v in {**trial.params, **constants}.items()}
        study.tell(trial, 0.0)


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
"""What a weights entry fetched for ImageNet weights records (the tests' downloads stand in for a hub's)."""


def offline_download(encoder, name):
    """segtune.weights.download_encoder on a machine without network."""
    raise OSError("Cannot reach huggingface.co (simulated: no network)")
