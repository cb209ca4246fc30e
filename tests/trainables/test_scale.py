"""trainables/scale.py: a trial at scale s trains and predicts on resized images, and is scored at the labels' size;
progressive resolution trains the first rung at a reduced scale on shrunk crops."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from segtune import names
from segtune.data import SegmentationData, make_splits, make_synthetic
from segtune.data.resize import scaled_size
from trainables import TrialConfig, run_trial
from trainables.device import Compute
from trainables.loop import evaluate
from trainables.losses import build_loss
from trainables.scale import ScaledValidation, crop_at, epoch_scale, reference_logits, scaled_data
import trainables.trainable as trainable


class Sign(torch.nn.Module):
    """Pointwise logits (-x, x) of a one-channel image: class 1 wherever the normalised pixel is above 0."""

    def forward(self, images):
        return torch.cat([-images, images], 1)


def half_and_half(odd_pixel: bool) -> SegmentationData:
    """One 8x8 grey image, black left half and white right half; its mask 0 left, 1 right, and with odd_pixel a
    single class-1 label at (0, 0) in the left half, which no prediction at half size can resolve."""
    image = np.zeros((8, 8, 1), np.uint8)
    image[:, 4:] = 255
    mask = np.zeros((8, 8), np.uint8)
    mask[:, 4:] = 1
    if odd_pixel:
        mask[0, 0] = 1
    return SegmentationData([image], [mask], ["photo"], ("left", "right"))


def sign_config(**overrides) -> TrialConfig:
    return TrialConfig(**{"in_channels": 1, "num_classes": 2, "mean": (0.5,), "std": (0.5,), "crop": (32, 32),
                          "batch_size": 1, "class_names": ("left", "right"), **overrides})


def score(data: SegmentationData, cfg: TrialConfig, keep=None) -> dict:
    loader = DataLoader(ScaledValidation(scaled_data(data, ["photo"], cfg.scale), data, ["photo"], cfg.mean, cfg.std))
    return evaluate(Sign(), loader, build_loss("cross_entropy", 255), cfg, Compute(torch.device("cpu")), keep)


def test_a_half_size_prediction_that_upsamples_exactly_scores_one_at_the_labels_size():
    # at half size (4x4) PIL's bilinear filter gives columns 0, 32, 223, 255 -> x = -1, -0.75, 0.75, 1; upsampled to
    # 8 columns, column 3 sits at 1.25: 0.75 * -0.75 + 0.25 * 0.75 = -0.375 (left), column 4 at 1.75: +0.375 (right)
    kept = []
    result = score(half_and_half(odd_pixel=False), sign_config(scale=0.5), kept)
    assert result[names.VAL_MIOU] == 1.0 and result[names.VAL_PIXEL_ACCURACY] == 1.0
    assert kept[0].shape == (2, 8, 8)  # the probabilities kept for ensembles are at the labels' size too


def test_the_confusion_matrix_counts_the_label_pixels_not_the_scaled_ones():
    # 64 label pixels, 63 right: the class-1 label at (0, 0) is predicted left. Accuracy 63/64; IoU left = 31 / (31 + 1)
    # (one false positive), IoU right = 32 / (32 + 1) (one false negative). At half size there would be 16 pixels.
    result = score(half_and_half(odd_pixel=True), sign_config(scale=0.5))
    assert result[names.VAL_PIXEL_ACCURACY] == pytest.approx(63 / 64)
    assert result[names.VAL_MIOU] == pytest.approx((31 / 32 + 32 / 33) / 2)


def test_reference_logits_predict_at_the_scale_and_answer_at_the_image_size():
    image = half_and_half(odd_pixel=False).images[0]
    logits = reference_logits(Sign(), image, sign_config(scale=0.5))
    assert logits.shape == (1, 2, 8, 8)
    assert logits.argmax(1)[0].tolist() == [[0] * 4 + [1] * 4] * 8


def test_scaled_sizes_round_half_up_and_masks_keep_their_labels():
    assert scaled_size((242, 324), 0.5) == (121, 162) and scaled_size((121, 162), 0.25) == (30, 41)
    assert scaled_size((3, 1), 0.25) == (1, 1)  # never below one pixel
    data = half_and_half(odd_pixel=True)
    view = scaled_data(data, ["photo"], 0.5)
    assert view.images[0].shape == (4, 4, 1) and view.masks[0].dtype == np.uint8
    assert set(np.unique(view.masks[0])) <= {0, 1}  # nearest: no blended class index
    assert scaled_data(data, ["photo"], 1.0) is data  # scale 1: no copy


def test_the_first_rung_runs_at_the_reduced_scale_and_later_epochs_at_the_trials_own():
    cfg = TrialConfig(scale=0.5, progressive_epochs=2, progressive_scale=0.5, max_epochs=4)
    assert [epoch_scale(cfg, e) for e in (1, 2, 3, 4)] == [0.25, 0.25, 0.5, 0.5]
    assert [epoch_scale(TrialConfig(scale=0.5, max_epochs=4), e) for e in (1, 4)] == [0.5, 0.5]


def test_crops_stay_the_network_crop_shrink_in_the_first_rung_and_never_exceed_the_scaled_images():
    big, small = [np.zeros((300, 400, 3), np.uint8)], [np.zeros((121, 162, 3), np.uint8)]
    cfg = TrialConfig(crop=(192, 256), encoder_depth=5, scale=0.5, progressive_epochs=1, max_epochs=3)
    assert crop_at(cfg, 0.5, big) == (192, 256)  # the trial's own scale: the network crop
    assert crop_at(cfg, 0.25, big) == (96, 128)  # first rung: 192 * 0.5, 256 * 0.5
    assert crop_at(cfg, 0.5, small) == (128, 192)  # 121x162 rounded up to 32: a crop of 192x256 would be mostly padding
    assert crop_at(TrialConfig(crop=(48, 48), encoder_depth=4), 1.0, small) == (48, 48)  # scale 1: as configured


def test_scale_options_are_refused_naming_the_option():
    with pytest.raises(ValueError, match="scale 1.5 must be in \\(0, 1\\]"):
        TrialConfig(scale=1.5)
    with pytest.raises(ValueError, match="progressive_scale 1.0 must be in \\(0, 1\\)"):
        TrialConfig(progressive_scale=1.0)
    with pytest.raises(ValueError, match="progressive_epochs 4 must be 0 or below max_epochs 4"):
        TrialConfig(progressive_epochs=4, max_epochs=4)


@pytest.mark.slow  # 17 s on the loaded 2-core machine
def test_a_progressive_trial_resizes_once_per_scale_reports_its_scale_and_pixels(monkeypatch):
    data = make_synthetic(count=8, height=128, width=128)
    splits = make_splits(data, 0.25, 0.0, seed=0)
    resized = []
    monkeypatch.setattr(trainable, "scaled_data", lambda d, ids, s: resized.append(s) or scaled_data(d, ids, s))
    cfg = TrialConfig(num_classes=4, max_epochs=3, steps_per_epoch=2, batch_size=2, scale=0.5, progressive_epochs=2,
                      progressive_scale=0.5, seed=1)
    reports = []
    run_trial(cfg, data, splits, lambda result, state: reports.append((result, state)))
    assert resized == [0.25, 0.5]  # once per scale, not per epoch
    assert [r[names.TRAIN_SCALE] for r, _ in reports] == [0.25, 0.25, 0.5]
    # 2 steps x 2 crops: 32x32 crops in the rung (64 * 0.5, the 32x32 images), 64x64 after -> a quarter of the pixels
    assert [r[names.TRAIN_PIXELS] for r, _ in reports] == [4 * 32 * 32, 4 * 32 * 32, 4 * 64 * 64]
    # a checkpoint runs its model at the scale its epoch trained at
    assert [(s["trial_config"]["scale"], s["trial_config"]["progressive_epochs"]) for _, s in reports] == \
        [(0.25, 0), (0.25, 0), (0.5, 2)]
    maps = next(s["val_probabilities"] for _, s in reversed(reports) if s["val_probabilities"])
    assert maps["maps"][0].shape == (4, 128, 128)  # kept at the read size whatever the scale
