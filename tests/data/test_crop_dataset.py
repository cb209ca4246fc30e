"""CropDataset and WholeImageDataset: shapes, dtypes, padding, normalisation, reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fakes
from segtune.data import CropDataset, SegmentationData, WholeImageDataset, load_dataset, normalisation_stats

MEAN, STD = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]


@pytest.fixture
def folder_data(tmp_path):
    return load_dataset(str(fakes.write_index_folder(tmp_path / "ds", n=4, size=(32, 48))))


def find_window(big: np.ndarray, small: np.ndarray) -> list[tuple[int, int]]:
    """Every (top, left) where `small` sits inside `big` (2-D)."""
    h, w = small.shape
    return [(t, l) for t in range(big.shape[0] - h + 1) for l in range(big.shape[1] - w + 1)
            if np.array_equal(big[t:t + h, l:l + w], small)]


def test_crop_shapes_and_dtypes(folder_data):
    ids = folder_data.names
    crops = CropDataset(folder_data, ids, crop=(16, 24), mean=MEAN, std=STD, seed=0, pad_value=255)
    assert len(crops) == 4
    image, mask = crops[1]
    assert isinstance(image, torch.Tensor) and image.dtype == torch.float32
    assert image.shape == (3, 16, 24)
    assert mask.dtype == torch.int64 and mask.shape == (16, 24)


def test_crop_is_a_window_of_the_source_with_image_and_mask_aligned(folder_data):
    crops = CropDataset(folder_data, ["img_02"], crop=(16, 24), mean=MEAN, std=STD, seed=5, pad_value=255)
    image, mask = crops[0]
    source_image = folder_data.images[folder_data.index_of()["img_02"]]
    source_mask = folder_data.masks[folder_data.index_of()["img_02"]]
    # mean 0 / std 1: the tensor is the 0..1 image
    pixels = (image.numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)
    # the image rows are constant top to bottom, so locate the crop by the mask and check both
    spots = [(t, l) for t, l in find_window(source_mask, mask.numpy().astype(np.uint8))
             if np.array_equal(source_image[t:t + 16, l:l + 24], pixels)]
    assert spots, "crop is not a window of its own image and mask"
    # image pixels follow their classes (fakes: 10*i + 50*class, i = 2); ignore pixels are class-0 grey
    m = mask.numpy()
    for cls in np.unique(m):
        expected = 20 + 50 * (0 if cls == 255 else int(cls))
        assert (pixels[m == cls] == expected).all()


def test_crop_normalises_with_mean_and_std():
    data = SegmentationData([np.full((8, 8, 3), 51, np.uint8)], [np.zeros((8, 8), np.uint8)], ["a"], ("bg",))
    crops = CropDataset(data, ["a"], crop=(4, 4), mean=[0.1, 0.2, 0.3], std=[0.5, 0.5, 0.1], seed=0,
                        pad_value=255)
    image, _ = crops[0]
    # 51 / 255 = 0.2 -> (0.2 - mean) / std
    assert torch.allclose(image[:, 0, 0], torch.tensor([0.2, 0.0, -1.0]), atol=1e-5)


def test_crop_larger_than_image_pads_mask_with_the_ignore_value():
    image = np.full((10, 12, 3), 100, np.uint8)
    mask = np.ones((10, 12), np.uint8)
    data = SegmentationData([image], [mask], ["small"], ("bg", "fg"))
    crops = CropDataset(data, ["small"], crop=(16, 20), mean=MEAN, std=STD, seed=0, pad_value=255)
    out_image, out_mask = crops[0]
    assert out_image.shape == (3, 16, 20) and out_mask.shape == (16, 20)
    m = out_mask.numpy()
    assert (m[:10, :12] == 1).all()                   # the real pixels, at the top left
    assert (m[10:, :] == 255).all() and (m[:, 12:] == 255).all()
    assert (m == 255).sum() == 16 * 20 - 10 * 12
    assert torch.isfinite(out_image).all()


def test_crop_padding_in_one_direction_only():
    image = np.zeros((10, 40, 1), np.uint8)
    mask = np.zeros((10, 40), np.uint8)
    data = SegmentationData([image], [mask], ["wide"], ("bg", "fg"))
    crops = CropDataset(data, ["wide"], crop=(16, 16), mean=[0.0], std=[1.0], seed=1, pad_value=7)
    out_image, out_mask = crops[0]
    assert out_image.shape == (1, 16, 16)
    m = out_mask.numpy()
    assert (m[:10] == 0).all() and (m[10:] == 7).all()


def test_crop_is_reproducible_for_seed_and_epoch(folder_data):
    ids = folder_data.names

    def crops_for(seed, epoch):
        dataset = CropDataset(folder_data, ids, crop=(8, 8), mean=MEAN, std=STD, seed=seed, pad_value=255)
        dataset.epoch = epoch
        return [dataset[i] for i in range(len(dataset))]

    def same(a, b):
        return all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))

    assert same(crops_for(0, 0), crops_for(0, 0))
    assert same(crops_for(3, 2), crops_for(3, 2))
    # a different epoch or seed moves at least one of the four 8x8 windows of a 32x48 image
    assert not same(crops_for(0, 0), crops_for(0, 1))
    assert not same(crops_for(0, 0), crops_for(1, 0))


def test_crop_dataset_follows_the_id_order(folder_data):
    crops = CropDataset(folder_data, ["img_03", "img_00"], crop=(32, 48), mean=MEAN, std=STD, seed=0,
                        pad_value=255)
    first, _ = crops[0]
    second, _ = crops[1]
    # crop == image size: the whole image; column 40 is class 2 -> 10*i + 100
    assert round(float(first[0, 10, 40]) * 255) == 130
    assert round(float(second[0, 10, 40]) * 255) == 100


def test_whole_image_dataset_returns_full_size(folder_data):
    whole = WholeImageDataset(folder_data, ["img_01", "img_03"], mean=MEAN, std=STD)
    assert len(whole) == 2
    image, mask = whole[1]
    assert image.shape == (3, 32, 48) and image.dtype == torch.float32
    assert mask.shape == (32, 48) and mask.dtype == torch.int64
    np.testing.assert_array_equal(mask.numpy(), folder_data.masks[folder_data.index_of()["img_03"]])
    assert round(float(image[0, 10, 40]) * 255) == 130


def test_whole_image_dataset_grayscale(tmp_path):
    data = load_dataset(str(fakes.write_npz(tmp_path / "p.npz", n=2, size=(16, 32))))
    image, mask = WholeImageDataset(data, data.names, mean=[0.5], std=[0.25])[0]
    assert image.shape == (1, 16, 32) and mask.shape == (16, 32)
    # pixel 0 of image 0 is 0 -> (0 - 0.5) / 0.25
    assert float(image[0, 0, 0]) == pytest.approx(-2.0)


def test_normalisation_stats():
    images = [np.zeros((4, 4, 1), np.uint8), np.full((4, 4, 1), 255, np.uint8), np.full((4, 4, 1), 51, np.uint8)]
    data = SegmentationData(images, [np.zeros((4, 4), np.uint8)] * 3, ["a", "b", "c"], ("bg",))
    mean, std = normalisation_stats(data, ["a", "b"])
    assert mean == [0.5] and std == [0.5]
    mean, std = normalisation_stats(data, ["c"])
    assert mean == [0.2] and std == [0.001]          # constant image: std floored, never 0
