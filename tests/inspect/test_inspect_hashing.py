"""Perceptual hash and mask digest: near-identical pictures land close, different ones far apart."""

from __future__ import annotations

import numpy as np

import fakes
from segtune.inspect.duplicates import DEFAULT_HASH_THRESHOLD
from segtune.inspect.hashing import (HASH_BITS, close_pairs, dct_hash, fingerprint, grey_thumbnail, hamming, mask_digest,
                                    perceptual_hash)


def test_constant_picture_sets_only_the_brightness_bit():
    # every AC coefficient of a flat picture is 0, not above the AC median (0); the DC term (640) is:
    # the first of the 256 bits, i.e. 1 << 255
    assert dct_hash(np.full((64, 64), 10.0)) == 1 << (HASH_BITS - 1)


def test_brightened_noisy_copy_is_near_and_other_pictures_are_far():
    picture = fakes.texture(3)
    noisy = np.clip(picture + 12.0 + np.random.default_rng(0).normal(0, 3, picture.shape), 0, 255).astype(np.uint8)
    assert hamming(perceptual_hash(picture), perceptual_hash(noisy)) <= DEFAULT_HASH_THRESHOLD
    others = [hamming(perceptual_hash(picture), perceptual_hash(fakes.texture(i))) for i in range(4, 10)]
    assert min(others) > 2 * DEFAULT_HASH_THRESHOLD


def test_grey_and_rgb_pictures_hash_alike():
    grey = fakes.texture(1)[:, :, :1]
    assert perceptual_hash(grey) == perceptual_hash(np.repeat(grey, 3, axis=2))


def test_fingerprint_is_the_hash_and_a_32_pixel_grey_thumbnail():
    picture = fakes.texture(3)
    bits, thumbnail = fingerprint(picture)
    assert bits == perceptual_hash(picture) and thumbnail.shape == (32, 32)
    assert np.abs(thumbnail - grey_thumbnail(picture, 32)).max() <= 1.0   # PIL rounds each box to a grey level


def test_close_pairs_by_hand():
    # 0000 vs 0011: 2 bits; 0011 vs 1111: 2; 0000 vs 1111: 4; bit 200 (in the 4th 64-bit word) vs 0000: 1,
    # vs 0011: 3, vs 1111: 5 -> within 2: (0,1), (0,3), (1,2)
    hashes = [0b0000, 0b0011, 0b1111, 1 << 200]
    assert sorted(close_pairs(hashes, threshold=2)) == [(0, 1, 2), (0, 3, 1), (1, 2, 2)]
    assert close_pairs(hashes, threshold=0) == []


def test_mask_digest_is_exact_and_shape_aware():
    mask = np.zeros((4, 4), dtype=np.uint8)
    changed = mask.copy()
    changed[3, 3] = 1
    assert mask_digest(mask) == mask_digest(mask.copy())
    assert mask_digest(mask) != mask_digest(changed)
    assert mask_digest(mask) != mask_digest(np.zeros((2, 8), dtype=np.uint8))
