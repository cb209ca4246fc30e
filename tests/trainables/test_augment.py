"""Training-crop augmentation: image and mask move together, border pixels become ignore, runs repeat.

The test crops encode their mask in the image: a pixel of class c has grey level CODES[c] = 60 c + 20, so
after any geometric transform the image must still read as the mask's class almost everywhere (only pixels
that interpolation blends across a class edge may read as a neighbour).
"""

import numpy as np
import pytest
import torch

import fakes
from segtune.data import CropDataset, SegmentationData
from trainables.augment import Augmenter, build_augmenter
from trainables.config import TrialConfig
from trainables.trainable import build_train_set

IGNORE = 255
CODES = np.array([20, 80, 140, 200])  # grey level of classes 0..3
RARE = 3
SEEDS = range(30)
GEOMETRIC = {"flip": True, "rotate90": True, "shift_scale_rotate": 1.0, "distortion": 1.0}
PIXEL_ONLY = {"brightness_contrast": 1.0, "gamma": 1.0, "blur_noise": 1.0}


def quadrant_mask(size: int = 64) -> np.ndarray:
    """Classes 0 | 1 over 2 | 3 in quadrants: no flip or rotation maps it onto itself."""
    rows, cols = np.mgrid[0:size, 0:size]
    return ((rows // (size // 2)) * 2 + cols // (size // 2)).astype(np.uint8)


def encode(mask: np.ndarray, channels: int = 3) -> np.ndarray:
    """(H, W, channels) uint8 image whose grey level is the class code of the mask."""
    return np.repeat(CODES[mask].astype(np.uint8)[:, :, None], channels, axis=2)


def aligned_fraction(image: np.ndarray, mask: np.ndarray) -> float:
    """Share of labelled pixels whose grey level is nearest to their own class code."""
    labelled = mask != IGNORE
    nearest = np.abs(image.mean(axis=2)[..., None] - CODES).argmin(-1)
    return float((nearest[labelled] == mask[labelled]).mean())


def config(channels: int = 3, **fields) -> TrialConfig:
    return TrialConfig(num_classes=4, in_channels=channels, mean=(0.5,) * channels, std=(0.25,) * channels,
                       **fields)


def no_other_crop(rng):
    raise AssertionError("only CutMix may draw another crop")


def check_shapes(image, mask, channels):
    assert image.shape == (64, 64, channels) and image.dtype == np.uint8  # to_tensor divides by 255
    assert mask.shape == (64, 64) and mask.dtype == np.uint8


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("field", sorted(GEOMETRIC))
def test_geometric_augmentation_keeps_image_and_mask_aligned(field, channels):
    augment = Augmenter(config(channels, **{field: GEOMETRIC[field]}), [], RARE)
    mask, image = quadrant_mask(), encode(quadrant_mask(), channels)
    moved = 0
    for seed in SEEDS:
        out_image, out_mask = augment(image, mask, np.random.default_rng(seed), no_other_crop)
        check_shapes(out_image, out_mask, channels)
        assert set(np.unique(out_mask)) <= {0, 1, 2, 3, IGNORE}
        assert aligned_fraction(out_image, out_mask) >= 0.97, f"seed {seed}"
        moved += not np.array_equal(out_mask, mask)
        if field in ("flip", "rotate90"):  # these only permute pixels: nothing new at the border
            assert IGNORE not in out_mask
    assert moved >= 5, f"{field} changed the mask in only {moved} of {len(SEEDS)} calls"


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("field", sorted(PIXEL_ONLY))
def test_pixel_augmentation_changes_the_image_only(field, channels):
    augment = Augmenter(config(channels, **{field: PIXEL_ONLY[field]}), [], RARE)
    mask, image = quadrant_mask(), encode(quadrant_mask(), channels)
    changed = 0
    for seed in SEEDS:
        out_image, out_mask = augment(image, mask, np.random.default_rng(seed), no_other_crop)
        check_shapes(out_image, out_mask, channels)
        np.testing.assert_array_equal(out_mask, mask)
        changed += not np.array_equal(out_image, image)
    # brightness/contrast and gamma are applied with p 0.5; blur_noise at probability 1 every time
    assert changed == len(SEEDS) if field == "blur_noise" else changed >= 5


@pytest.mark.parametrize("field", ["shift_scale_rotate", "distortion"])
def test_geometric_border_pixels_of_the_mask_become_ignore(field):
    # an all-class-2 crop: any other label after the transform must be the ignore fill (never 0 or a reflection)
    augment = Augmenter(config(**{field: 1.0}), [], RARE)
    mask = np.full((64, 64), 2, np.uint8)
    filled = 0
    for seed in SEEDS:
        _, out_mask = augment(encode(mask), mask, np.random.default_rng(seed), no_other_crop)
        assert set(np.unique(out_mask)) <= {2, IGNORE}
        filled += IGNORE in out_mask
    assert filled >= 5


def test_cutmix_pastes_a_box_of_another_crop_image_and_mask_together():
    other_mask = (quadrant_mask() + 1) % 4  # differs from the crop's class at every pixel
    augment = Augmenter(config(cutmix=1.0), [], RARE)
    mask, image = quadrant_mask(), encode(quadrant_mask())
    for seed in SEEDS:
        out_image, out_mask = augment(image, mask, np.random.default_rng(seed),
                                      lambda rng: (encode(other_mask), other_mask))
        check_shapes(out_image, out_mask, 3)
        np.testing.assert_array_equal(out_image, encode(out_mask))  # exact: pasting does not interpolate
        rows, cols = np.nonzero(out_mask != mask)
        # a box of 1/4 to 1/2 of each side: 16..32 rows and columns, all of them from the other crop
        assert 16 <= rows.max() - rows.min() + 1 <= 32 and 16 <= cols.max() - cols.min() + 1 <= 32
        assert rows.size == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)


def rare_data() -> SegmentationData:
    """Four 64x64 images; only 'with_rare' holds class 3, as a plus sign of 9 pixels (bounding box 5x5)."""
    masks = []
    for i in range(4):
        mask = np.minimum(quadrant_mask(), 2)  # classes 0, 1, 2
        if i == 0:
            mask[10:15, 22] = RARE
            mask[12, 20:25] = RARE
        masks.append(mask)
    names = ["with_rare", "plain_a", "plain_b", "plain_c"]
    return SegmentationData([encode(m) for m in masks], masks, names, ("bg", "a", "b", "rare"), IGNORE)


def test_copy_paste_adds_the_rare_class_with_its_pixels():
    data = rare_data()
    augment = build_augmenter(config(copy_paste=1.0), data, data.names, RARE)
    mask, image = data.masks[1], data.images[1]
    for seed in SEEDS:
        out_image, out_mask = augment(image, mask, np.random.default_rng(seed), no_other_crop)
        check_shapes(out_image, out_mask, 3)
        # the 9 rare pixels of the plus sign, not its 25-pixel bounding box; the rest of the crop untouched
        assert (out_mask == RARE).sum() == 9
        np.testing.assert_array_equal(out_mask[out_mask != RARE], mask[out_mask != RARE])
        np.testing.assert_array_equal(out_image, encode(out_mask))


def test_copy_paste_needs_a_rare_region_in_the_training_images():
    data = rare_data()
    # 'with_rare' is not a training image: nothing to paste, and nothing else is on
    assert build_augmenter(config(copy_paste=1.0), data, data.names[1:], RARE) is None


def test_build_augmenter_returns_none_when_everything_is_off():
    data = rare_data()
    assert build_augmenter(config(), data, data.names, RARE) is None
    assert build_augmenter(config(flip=True), data, data.names, RARE) is not None


ALL_ON = dict(flip=True, rotate90=True, shift_scale_rotate=0.5, brightness_contrast=0.3, gamma=0.3,
              blur_noise=0.5, distortion=0.5, cutmix=0.5, copy_paste=0.5)


def test_augmentation_never_modifies_the_dataset_arrays():
    data = rare_data()
    before = [(image.copy(), mask.copy()) for image, mask in zip(data.images, data.masks)]
    augment = build_augmenter(config(cutmix=1.0, copy_paste=1.0), data, data.names, RARE)
    draw_other = lambda rng: (data.images[2], data.masks[2])  # noqa: E731
    for seed in SEEDS:
        augment(data.images[1], data.masks[1], np.random.default_rng(seed), draw_other)
    for (image, mask), now_image, now_mask in zip(before, data.images, data.masks):
        np.testing.assert_array_equal(now_image, image)
        np.testing.assert_array_equal(now_mask, mask)


def same_pairs(a, b):
    return all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b, strict=True))


def test_same_rng_seed_gives_the_same_augmentation_whatever_came_before():
    data = rare_data()
    draw_other = lambda rng: (data.images[2], data.masks[2])  # noqa: E731
    augment = build_augmenter(config(**ALL_ON), data, data.names, RARE)

    def outputs(seeds):
        return [augment(data.images[1], data.masks[1], np.random.default_rng(seed), draw_other) for seed in seeds]

    first = outputs(range(8))
    # the same augmenter again, in another order (as another DataLoader worker would call it)
    assert same_pairs(outputs(reversed(range(8)))[::-1], first)
    assert not same_pairs(outputs(range(100, 108)), first)


def test_crop_dataset_with_augmentation_is_reproducible_for_seed_epoch_and_position():
    data = rare_data()
    augmenter = build_augmenter(config(**ALL_ON), data, data.names, RARE)

    def crops(epoch, augment=augmenter, positions=range(4)):
        dataset = CropDataset(data, data.names, (32, 32), (0.5,) * 3, (0.25,) * 3, seed=3, pad_value=IGNORE,
                              augment=augment)
        dataset.epoch = epoch
        return {position: dataset[position] for position in positions}

    def same(a, b):
        return all(torch.equal(a[k][0], b[k][0]) and torch.equal(a[k][1], b[k][1]) for k in a)

    first = crops(1)
    assert same(crops(1, positions=[3, 1, 0, 2]), first)
    assert same(crops(1, augment=build_augmenter(config(**ALL_ON), data, data.names, RARE)), first)
    assert not same(crops(2), first)
    assert not same(crops(1, augment=None), first)  # the augmentation really ran


def test_images_with_the_rarest_class_are_oversampled():
    # one labelled pixel per listed class: counts class 1: 4, class 2: 3, class 3: 1 -> class 3 is rarest
    data = fakes.make_segmentation_data([{1, 2}, {1, 2, 3}, {1, 2}, {1}, {1, 3}])
    ids = data.names[:4]  # the fifth image is not in the training split
    _, weights = build_train_set(config(oversample_rare=4.0), data, ids)
    assert weights == [1.0, 4.0, 1.0, 1.0]
    _, weights = build_train_set(config(), data, ids)
    assert weights is None


def test_every_augmentation_keeps_a_non_square_crop_its_shape():
    # a 90-degree turn of a 64x96 crop would be 96x64 and break batching (found by a cwfid search)
    from segtune.data import make_synthetic
    data = make_synthetic(count=6)
    cfg = TrialConfig(num_classes=4, crop=(64, 96), flip=True, rotate90=True, shift_scale_rotate=1.0,
                      brightness_contrast=0.4, gamma=0.4, blur_noise=1.0, distortion=1.0, cutmix=1.0, copy_paste=1.0)
    augmenter = build_augmenter(cfg, data, data.names, rare=3)
    crop = np.zeros((64, 96, 3), np.uint8), np.zeros((64, 96), np.uint8)
    draw_other = lambda rng: crop  # noqa: E731
    for seed in range(40):
        image, mask = augmenter(*crop, np.random.default_rng(seed), draw_other)
        assert image.shape == (64, 96, 3) and mask.shape == (64, 96)
