import math

import pytest
import torch

from trainables.class_weights import median_frequency_weights, pixel_counts
from trainables.losses import build_loss, dice_loss

IGNORE = 255


def logits_for(probabilities):
    """Logits (1, C, 1, W) whose softmax gives the given per-pixel class probabilities."""
    return torch.tensor(probabilities, dtype=torch.float32).log().T[None, :, None, :]


def test_cross_entropy_matches_hand_value_and_skips_ignored_pixels():
    # pixel 0: p(class 1) = 3/4, target 1 -> -ln(3/4); pixel 1 is ignored whatever it predicts
    logits = logits_for([[0.25, 0.75], [0.9, 0.1]])
    target = torch.tensor([[[1, IGNORE]]])
    loss = build_loss("cross_entropy", IGNORE)(logits, target)
    assert loss.item() == pytest.approx(-math.log(0.75), rel=1e-5)


def test_weighted_cross_entropy_is_weight_normalised_mean():
    # pixel 0: target 0, p=1/4 -> ln 4 with weight 1; pixel 1: target 1, p=3/4 -> ln(4/3) with weight 3
    logits = logits_for([[0.25, 0.75], [0.25, 0.75]])
    target = torch.tensor([[[0, 1]]])
    loss = build_loss("weighted_cross_entropy", IGNORE, class_weights=[1.0, 3.0])(logits, target)
    assert loss.item() == pytest.approx((math.log(4) + 3 * math.log(4 / 3)) / 4, rel=1e-5)


def test_dice_on_hard_predictions_matches_hand_value():
    # class 1: pred 1010 vs target 1100: overlap 1 -> dice 2*1/(2+2) = 0.5
    # class 0: pred 0101 vs target 0011: overlap 1 -> dice 0.5; loss = mean(1 - 0.5) = 0.5
    pred = torch.tensor([1, 0, 1, 0])
    logits = (torch.nn.functional.one_hot(pred, 2).T.float() * 50)[None, :, None, :]
    target = torch.tensor([[[1, 1, 0, 0]]])
    assert dice_loss(logits, target, IGNORE).item() == pytest.approx(0.5, abs=1e-4)
    # two extra ignored pixels, predicted wrongly, change nothing
    logits_more = torch.cat([logits, logits[..., :2]], dim=3)
    target_more = torch.tensor([[[1, 1, 0, 0, IGNORE, IGNORE]]])
    assert dice_loss(logits_more, target_more, IGNORE).item() == pytest.approx(0.5, abs=1e-4)


def test_combined_loss_is_sum_of_parts():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    total = build_loss("cross_entropy_dice", IGNORE)(logits, target)
    parts = build_loss("cross_entropy", IGNORE)(logits, target) + build_loss("dice", IGNORE)(logits, target)
    assert total.item() == pytest.approx(parts.item())


def test_unknown_loss_lists_valid_names():
    with pytest.raises(KeyError, match="cross_entropy_dice"):
        build_loss("focal_typo", IGNORE)


def test_median_frequency_weights_are_capped():
    # frequencies 0.9, 0.09, 0.01; median 0.09 -> 0.1, 1, 9; cap 5 -> 5; absent class -> 0
    assert median_frequency_weights([900, 90, 10], cap=5.0) == pytest.approx([0.1, 1.0, 5.0])
    assert median_frequency_weights([900, 90, 10, 0], cap=50.0) == pytest.approx([0.1, 1.0, 9.0, 0.0])


def test_pixel_counts_skip_ignore_values():
    mask = torch.tensor([[0, 1, 1, 255]], dtype=torch.uint8).numpy()
    assert pixel_counts([mask, mask], 3) == [2, 4, 0]
