"""Tiled prediction: images of any size, tiles placed and blended so the result has no seams."""

import shutil

import numpy as np
import pytest
from PIL import Image
from tiny_ensembles import eager, edit_manifest, random_image

from ensembles.bundle import load_bundle
from ensembles.predict import predict_image
from segtune.tiling import blend_window
from segtune.data import load_dataset


class PointwiseBundle:
    """A network that sees one pixel at a time, so a correctly tiled image must equal it everywhere."""

    def __init__(self, tile, overlap=0.25):
        self.manifest = {"tile": tile, "overlap": overlap, "in_channels": 1, "classes": ["a", "b", "c"],
                         "input_scale": None, "any_size": False}

    def predict(self, tiles):
        return pointwise_probs(tiles[:, 0])


def pointwise_probs(values):
    logits = np.stack([values, 255 - values, np.full_like(values, 128.0)], 1) / 64
    exp = np.exp(logits - logits.max(1, keepdims=True))
    return exp / exp.sum(1, keepdims=True)


class AlternatingBundle:
    """Every tile is certain of one class, 0 and 1 in turn in the order tiles are run: a worst case for seams."""

    def __init__(self, tile, overlap):
        self.manifest = {"tile": tile, "overlap": overlap, "in_channels": 1, "classes": ["a", "b"],
                         "input_scale": None, "any_size": False}
        self.tiles_run = 0

    def predict(self, tiles):
        probs = np.zeros((len(tiles), 2, *tiles.shape[2:]), np.float32)
        for i in range(len(tiles)):
            probs[i, (self.tiles_run + i) % 2] = 1
        self.tiles_run += len(tiles)
        return probs


def test_blend_window_by_hand():
    # size 8, ramp 4: centres 0.5 1.5 2.5 3.5 ... -> min(centre, 8 - centre) / 4 = 0.125 0.375 0.625 0.875, mirrored
    np.testing.assert_allclose(blend_window(8, 4), [0.125, 0.375, 0.625, 0.875, 0.875, 0.625, 0.375, 0.125])
    np.testing.assert_allclose(blend_window(8, 2), [0.25, 0.75, 1, 1, 1, 1, 0.75, 0.25])
    np.testing.assert_array_equal(blend_window(5, 0), np.ones(5))


@pytest.mark.parametrize("size", [(64, 96), (65, 97), (150, 200), (20, 30), (1, 300)])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_every_pixel_gets_its_own_prediction(size, batch_size):
    image = random_image(*size, 1, seed=size[0])
    probs = predict_image(PointwiseBundle([64, 96]), image, batch_size)
    np.testing.assert_allclose(probs, pointwise_probs(image[..., 0][None].astype(np.float32))[0], atol=1e-6)


def test_overlapping_tiles_cross_fade():
    # 168 wide, tiles 96 wide with overlap 0.25: starts 0 and 72, overlap columns 72..95, a 24-pixel linear fade
    probs = predict_image(AlternatingBundle([64, 96], 0.25), np.zeros((64, 168), np.uint8))
    row = probs[1, 30]
    assert (row[:72] == 0).all() and (row[96:] == 1).all()
    steps = np.diff(row)
    assert (steps >= 0).all() and steps.max() <= 1 / 24 + 1e-6, "a seam: neighbouring columns jump"


def test_one_tile_image_equals_the_eager_module(rgb_ensemble):
    module, folder = rgb_ensemble
    image = random_image(64, 96, 3)
    np.testing.assert_allclose(predict_image(load_bundle(folder), image), eager(module, image), atol=1e-4)


def test_larger_image_is_tiled_with_the_real_network(rgb_ensemble):
    module, folder = rgb_ensemble
    image = random_image(150, 200, 3, seed=1)
    probs = predict_image(load_bundle(folder, "onnx"), image, batch_size=4, tile_above=0)  # 0: tiles, though it fits
    assert probs.shape == (3, 150, 200) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-5)
    # rows start at 0, 48, 86 and columns at 0, 72, 104: the corners are seen by one tile only
    np.testing.assert_allclose(probs[:, :48, :72], eager(module, image[:64, :96])[:, :48, :72], atol=1e-4)
    np.testing.assert_allclose(probs[:, 112:, 168:], eager(module, image[86:, 104:])[:, 26:, 64:], atol=1e-4)


def test_smaller_image_is_mirrored_out_to_a_tile(gray_ensemble):
    module, folder = gray_ensemble
    image = random_image(20, 30, 1, seed=2)
    padded = np.pad(image, ((0, 44), (0, 34), (0, 0)), mode="reflect")
    probs = predict_image(load_bundle(folder, "onnx"), image)
    np.testing.assert_allclose(probs, eager(module, padded)[:, :20, :30], atol=1e-4)


def test_image_with_other_channels_is_refused(gray_ensemble):
    with pytest.raises(ValueError, match=r"has 3 channel\(s\), the bundle takes 1; convert it to grayscale"):
        predict_image(load_bundle(gray_ensemble[1], "onnx"), random_image(64, 64, 3))


def test_full_size_image_is_predicted_at_the_training_scale(gray_ensemble, tmp_path):
    # members trained on 128x192 images read at half size (resize [64, 96]), as a search with `resize` reads them
    resized = shutil.copytree(gray_ensemble[1], tmp_path / "bundle")
    edit_manifest(resized, lambda m: m.update(input_scale={"resize": [64, 96]}))
    full = random_image(128, 192, 1, seed=8)[..., 0]
    np.savez(tmp_path / "data.npz", pairs=np.stack([full, np.arange(full.size).reshape(full.shape) % 3])[None])
    training_size = load_dataset(str(tmp_path / "data.npz"), resize=(64, 96)).images[0]
    probs = predict_image(load_bundle(resized, "onnx"), full)
    small = predict_image(load_bundle(gray_ensemble[1], "onnx"), training_size)
    assert probs.shape == (3, 128, 192)
    upsampled = np.stack([np.asarray(Image.fromarray(p).resize((192, 128), Image.BILINEAR)) for p in small])
    np.testing.assert_allclose(probs, upsampled, atol=1e-5)  # the image was resized exactly as training read it
    # nearly every pixel gets the class of its training-size pixel (at full scale only 93 % do)
    assert (probs.argmax(0) == small.argmax(0).repeat(2, 0).repeat(2, 1)).mean() > 0.97
