"""Training-crop augmentation from a TrialConfig: albumentations, CutMix and rare-class copy-paste.

Image and mask always move together; validation is never augmented. Each call is seeded from the
crop's own generator, so a crop is the same whichever DataLoader worker makes it.
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np

from segtune.data import SegmentationData
from trainables.config import TrialConfig


def build_transform(cfg: TrialConfig) -> A.Compose | None:
    fill = {"border_mode": cv2.BORDER_CONSTANT, "fill": 0, "fill_mask": cfg.ignore_index}
    ops = []
    if cfg.flip:
        ops += [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
    if cfg.rotate90 and cfg.crop[0] == cfg.crop[1]:
        ops.append(A.RandomRotate90(p=0.5))
    elif cfg.rotate90:  # a 90-degree turn would change a non-square crop's shape: turn by 180 only
        ops.append(A.Compose([A.HorizontalFlip(p=1), A.VerticalFlip(p=1)], p=0.5))
    if strength := cfg.shift_scale_rotate:
        ops.append(A.Affine(translate_percent=(-0.1 * strength, 0.1 * strength), scale=(1 - 0.2 * strength, 1 + 0.2 * strength),
                            rotate=(-30 * strength, 30 * strength), p=0.5, **fill))
    if limit := cfg.brightness_contrast:
        ops.append(A.RandomBrightnessContrast(brightness_limit=limit, contrast_limit=limit, p=0.5))
    if limit := cfg.gamma:
        ops.append(A.RandomGamma(gamma_limit=(max(1.0, 100 * (1 - limit)), 100 * (1 + limit)), p=0.5))  # albumentations needs >= 1
    if cfg.blur_noise:
        ops.append(A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.GaussNoise(std_range=(0.02, 0.08))], p=cfg.blur_noise))
    if cfg.distortion:
        ops.append(A.OneOf([A.ElasticTransform(alpha=20, sigma=5, **fill), A.GridDistortion(**fill)], p=cfg.distortion))
    return A.Compose(ops, seed=cfg.seed) if ops else None


def rarest_class(pixel_counts) -> int:
    counts = np.asarray(pixel_counts, dtype=np.float64)
    return int(np.where(counts > 0, counts, np.inf).argmin())


def rare_region_bank(data: SegmentationData, ids: list[str], rare: int, crop) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image patch, region mask) around the rare class in each training image that has it."""
    index, bank = data.index_of(), []
    for image_id in ids:
        mask = data.masks[index[image_id]]
        rows, cols = np.nonzero(mask == rare)
        if rows.size:
            top, left = rows.min(), cols.min()
            bottom, right = min(rows.max() + 1, top + crop[0]), min(cols.max() + 1, left + crop[1])
            bank.append((data.images[index[image_id]][top:bottom, left:right], mask[top:bottom, left:right] == rare))
    return bank


def cutmix(image, mask, other_image, other_mask, rng: np.random.Generator):
    """Paste a random box (1/4 to 1/2 of each side) of another crop, image and mask alike."""
    height, width = mask.shape
    box_h, box_w = int(height * rng.uniform(0.25, 0.5)), int(width * rng.uniform(0.25, 0.5))
    top, left = int(rng.integers(0, height - box_h + 1)), int(rng.integers(0, width - box_w + 1))
    image, mask = image.copy(), mask.copy()
    image[top:top + box_h, left:left + box_w] = other_image[top:top + box_h, left:left + box_w]
    mask[top:top + box_h, left:left + box_w] = other_mask[top:top + box_h, left:left + box_w]
    return image, mask


def paste_region(image, mask, patch, region, rare: int, rng: np.random.Generator):
    """Copy the rare-class pixels of a patch into the crop at a random place."""
    height, width = mask.shape
    patch_h, patch_w = min(region.shape[0], height), min(region.shape[1], width)
    patch, region = patch[:patch_h, :patch_w], region[:patch_h, :patch_w]
    top, left = int(rng.integers(0, height - patch_h + 1)), int(rng.integers(0, width - patch_w + 1))
    image, mask = image.copy(), mask.copy()
    window = (slice(top, top + patch_h), slice(left, left + patch_w))
    image[window][region] = patch[region]
    mask[window][region] = rare
    return image, mask


class Augmenter:
    """Called by CropDataset on each crop: (image, mask, rng, draw_other) -> (image, mask)."""

    def __init__(self, cfg: TrialConfig, bank, rare: int):
        self.cfg, self.transform, self.bank, self.rare = cfg, build_transform(cfg), bank, rare

    def __call__(self, image, mask, rng: np.random.Generator, draw_other):
        if self.transform is not None:
            self.transform.set_random_seed(int(rng.integers(2 ** 31)))
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"].astype(np.uint8)  # albumentations may return int32
            if image.ndim == 2:
                image = image[:, :, None]
        if self.cfg.cutmix and rng.random() < self.cfg.cutmix:
            image, mask = cutmix(image, mask, *draw_other(rng), rng)
        if self.bank and rng.random() < self.cfg.copy_paste:
            patch, region = self.bank[int(rng.integers(len(self.bank)))]
            image, mask = paste_region(image, mask, patch, region, self.rare, rng)
        return image, mask

    @property
    def active(self) -> bool:
        return self.transform is not None or bool(self.cfg.cutmix) or bool(self.bank and self.cfg.copy_paste)


def build_augmenter(cfg: TrialConfig, data: SegmentationData, train_ids: list[str], rare: int) -> Augmenter | None:
    bank = rare_region_bank(data, train_ids, rare, cfg.crop) if cfg.copy_paste > 0 else []
    augmenter = Augmenter(cfg, bank, rare)
    return augmenter if augmenter.active else None
