"""trainables/tiled.py: validation tiles images larger than one training step, blended as predict blends them."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from segtune.data import SegmentationData, WholeImageDataset
from segtune.tiling import blend_window
from trainables import TrialConfig, build_model
from trainables.device import Compute
from trainables.loop import evaluate
from trainables.losses import build_loss
from trainables.tiled import step_pixels, tiled_log_probabilities, validation_logits


class Pointwise(torch.nn.Module):
    """A 1x1 convolution: each pixel's logits depend on that pixel only, so tiles cannot change them; it records
    the largest batch of pixels one forward pass held."""

    def __init__(self, channels: int = 3, classes: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(channels, classes, 1)
        self.largest = 0

    def forward(self, images):
        self.largest = max(self.largest, images.shape[0] * images.shape[-2] * images.shape[-1])
        return self.conv(images)


def config(crop=(64, 96), batch_size=2) -> TrialConfig:
    return TrialConfig(architecture="Unet", encoder="tu-mobilenetv3_small_050", encoder_depth=3, num_classes=3,
                       crop=crop, batch_size=batch_size, max_epochs=1, class_names=("a", "b", "c"))


def test_blend_window_falls_off_linearly_and_overlapping_tiles_sum_to_one():
    # size 8, ramp 2: centres 0.5 ... 7.5 -> min(1, min(c, 8 - c) / 2) = 0.25, 0.75, 1, 1, 1, 1, 0.75, 0.25
    assert blend_window(8, 2).tolist() == [0.25, 0.75, 1, 1, 1, 1, 0.75, 0.25]
    # two tiles overlapping by the ramp: the last two of one (0.75, 0.25) meet the first two of the next (0.25, 0.75)
    assert (blend_window(8, 2)[-2:] + blend_window(8, 2)[:2]).tolist() == [1.0, 1.0]
    assert blend_window(5, 0).tolist() == [1.0] * 5


def test_one_training_step_holds_batch_size_network_crops():
    # crop 64x96 is already a multiple of 32: 2 crops -> 2 * 64 * 96 = 12288 pixels; 56x72 rounds up to 64x96
    assert step_pixels(config()) == 12288 == step_pixels(config(crop=(56, 72)))


def test_an_image_within_one_step_goes_through_whole():
    model, image = Pointwise(), torch.rand(1, 3, 64, 96)
    assert torch.equal(validation_logits(model, image, config()), model(image))


def test_tiled_probabilities_equal_whole_image_ones_where_tiles_cannot_change_a_pixel():
    model, image = Pointwise(), torch.rand(1, 3, 200, 333)  # neither side a multiple of the tile
    tiled = validation_logits(model, image, config())
    assert tiled.shape == (1, 3, 200, 333)
    assert model.largest <= step_pixels(config())  # 2 tiles of 64x96 a pass, never the 66600-pixel image
    torch.testing.assert_close(tiled.exp(), torch.softmax(model(image), 1), atol=1e-5, rtol=1e-4)


def test_an_image_smaller_than_a_tile_in_one_axis_is_mirrored_out_and_cropped_back():
    model, image = Pointwise(), torch.rand(1, 3, 40, 400)
    probs = tiled_log_probabilities(model, image, [64, 96], batch_size=3).exp()
    torch.testing.assert_close(probs, torch.softmax(model(image), 1), atol=1e-5, rtol=1e-4)


def photo(height: int, width: int) -> SegmentationData:
    rng = np.random.default_rng(0)
    mask = np.zeros((height, width), np.uint8)
    mask[:, width // 3:] = 1
    mask[height // 2:, 2 * width // 3:] = 2
    image = (rng.random((height, width, 3)) * 60 + mask[..., None] * 60).astype(np.uint8)
    return SegmentationData(names=["photo"], images=[image], masks=[mask], classes=("a", "b", "c"),
                            ignore_index=255)


@pytest.mark.slow
def test_a_2048x1536_photo_scores_like_whole_image_validation_with_passes_no_larger_than_a_training_step():
    data, cfg = photo(1536, 2048), config(crop=(256, 256), batch_size=4)
    loader = DataLoader(WholeImageDataset(data, ["photo"], (0.5,) * 3, (0.25,) * 3), batch_size=1)
    model, loss = Pointwise(), build_loss("cross_entropy", 255)
    compute = Compute(torch.device("cpu"))
    tiled = evaluate(model, loader, loss, cfg, compute)
    assert model.largest == 4 * 256 * 256  # a quarter of a megapixel a pass instead of 3.1 megapixels
    whole = evaluate(model, loader, loss, config(crop=(1536, 2048), batch_size=1), compute)
    assert model.largest == 1536 * 2048
    assert tiled.keys() == whole.keys()
    for key in tiled:
        assert tiled[key] == pytest.approx(whole[key], abs=1e-4), key


def test_a_real_network_validates_a_large_image_in_tiles():
    cfg = config(crop=(64, 64), batch_size=2)
    model = build_model(cfg).eval()
    with torch.no_grad():
        scores = validation_logits(model, torch.rand(1, 3, 150, 220), cfg)
    assert scores.shape == (1, 3, 150, 220) and torch.isfinite(scores).all()
    torch.testing.assert_close(scores.exp().sum(1), torch.ones(1, 150, 220))  # blended probabilities
