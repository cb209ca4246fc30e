import math

import pytest
import torch

from segtune.names import LOSS_NAMES
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


# ---- hand-checked region, focal and per-image losses ------------------------------------------

def hard_logits(pred, num_classes: int = 2):
    """Logits (1, C, 1, W) that put probability ~1 (1 - e^-50) on each pixel's predicted class."""
    return (torch.nn.functional.one_hot(torch.tensor(pred), num_classes).T.float() * 50)[None, :, None, :]


def row(values):
    """A (1, 1, W) target."""
    return torch.tensor([[values]])


# pred 1110 vs target 1000 (the hard case used by Tversky and Jaccard below)
HARD_PRED, HARD_TARGET = [1, 1, 1, 0], [1, 0, 0, 0]


def test_focal_one_pixel_matches_hand_value():
    # p_t = 3/4, gamma 2 -> -(1 - 3/4)^2 ln(3/4) = -(1/16)(-0.287682) = 0.0179801
    loss = build_loss("focal", IGNORE, focal_gamma=2.0)(logits_for([[0.25, 0.75]]), row([1]))
    assert loss.item() == pytest.approx(-(0.25 ** 2) * math.log(0.75), rel=1e-5)
    assert loss.item() == pytest.approx(0.0179801, rel=1e-4)


def test_focal_with_gamma_zero_is_cross_entropy():
    # (1 - p_t)^0 = 1 -> -ln p_t averaged over labelled pixels, which is plain cross-entropy
    torch.manual_seed(3)
    logits, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    target[0, 0, :2] = IGNORE
    focal = build_loss("focal", IGNORE, focal_gamma=0.0)(logits, target)
    assert focal.item() == pytest.approx(build_loss("cross_entropy", IGNORE)(logits, target).item(), rel=1e-5)


def test_focal_class_weights_weight_the_mean():
    # pixel 0: target 0, p_t = 1/4 -> (3/4)^2 ln 4 = 0.779791, weight 1
    # pixel 1: target 1, p_t = 3/4 -> (1/4)^2 ln(4/3) = 0.017980, weight 3
    # weighted mean (0.779791 + 3 * 0.017980) / (1 + 3) = 0.208433
    logits, target = logits_for([[0.25, 0.75], [0.25, 0.75]]), row([0, 1])
    loss = build_loss("focal", IGNORE, class_weights=[1.0, 3.0], focal_gamma=2.0)(logits, target)
    assert loss.item() == pytest.approx((0.75 ** 2 * math.log(4) + 3 * 0.25 ** 2 * math.log(4 / 3)) / 4, rel=1e-5)
    assert loss.item() == pytest.approx(0.208433, rel=1e-4)


def test_tversky_on_hard_predictions_matches_hand_value():
    # alpha weighs FN (0.7), beta weighs FP (0.3)
    # class 1: pred 1110 vs target 1000: TP 1, FN 0, FP 2 -> TI = 1 / (1 + 0.7*0 + 0.3*2) = 1/1.6 = 0.625
    # class 0: pred 0001 vs target 0111: TP 1, FN 2, FP 0 -> TI = 1 / (1 + 0.7*2 + 0.3*0) = 1/2.4 = 0.416667
    # loss = mean(1 - 0.625, 1 - 0.416667) = (0.375 + 0.583333) / 2 = 0.479167
    loss = build_loss("tversky", IGNORE, tversky_alpha=0.7, tversky_beta=0.3)
    assert loss(hard_logits(HARD_PRED), row(HARD_TARGET)).item() == pytest.approx(0.479167, abs=1e-4)


def test_tversky_alpha_weighs_false_negatives_and_beta_false_positives():
    # target 1111 (class 0 absent, so only class 1 counts), pred 1100: TP 2, FN 2, FP 0
    # alpha 0.7 on FN: TI = 2 / (2 + 0.7*2) = 2/3.4 = 0.588235 -> loss 0.411765
    # swapped (alpha 0.3): TI = 2 / (2 + 0.3*2) = 2/2.6 = 0.769231 -> loss 0.230769
    logits, target = hard_logits([1, 1, 0, 0]), row([1, 1, 1, 1])
    as_configured = build_loss("tversky", IGNORE, tversky_alpha=0.7, tversky_beta=0.3)(logits, target)
    swapped = build_loss("tversky", IGNORE, tversky_alpha=0.3, tversky_beta=0.7)(logits, target)
    assert as_configured.item() == pytest.approx(0.411765, abs=1e-4)
    assert swapped.item() == pytest.approx(0.230769, abs=1e-4)


def test_focal_tversky_raises_each_class_term_to_gamma():
    # same hard case as the Tversky test: 1 - TI = 0.375 (class 1) and 0.583333 (class 0)
    # gamma 0.75: mean(0.375^0.75, 0.583333^0.75) = (0.479081 + 0.667605) / 2 = 0.573343
    loss = build_loss("focal_tversky", IGNORE, tversky_alpha=0.7, tversky_beta=0.3, focal_gamma=0.75)
    expected = (0.375 ** 0.75 + (1 - 1 / 2.4) ** 0.75) / 2
    assert loss(hard_logits(HARD_PRED), row(HARD_TARGET)).item() == pytest.approx(expected, abs=1e-4)
    assert expected == pytest.approx(0.573343, abs=1e-5)


def test_tversky_with_equal_weights_one_half_is_dice():
    # TP / (TP + FN/2 + FP/2) = 2TP / (2TP + FN + FP): the Dice coefficient
    torch.manual_seed(4)
    logits, target = torch.randn(2, 3, 5, 5), torch.randint(0, 3, (2, 5, 5))
    target[1, 2] = IGNORE
    tversky = build_loss("tversky", IGNORE, tversky_alpha=0.5, tversky_beta=0.5)(logits, target)
    assert tversky.item() == pytest.approx(build_loss("dice", IGNORE)(logits, target).item(), rel=1e-5)


def test_jaccard_on_hard_predictions_matches_hand_value():
    # class 1: pred 1110 vs target 1000: I = 1, U = 3 -> IoU 1/3
    # class 0: pred 0001 vs target 0111: I = 1, U = 3 -> IoU 1/3; loss = mean(1 - 1/3) = 2/3
    loss = build_loss("jaccard", IGNORE)(hard_logits(HARD_PRED), row(HARD_TARGET))
    assert loss.item() == pytest.approx(2 / 3, abs=1e-4)


def test_lovasz_on_hard_prediction_is_one_minus_iou():
    # two pixels, both class 1 (class 0 absent, so only class 1 counts); p(class 1) = [1, 0]
    # errors |fg - p| = [0, 1] -> sorted descending [1, 0] with fg_sorted [1, 1]
    # Lovasz gradient: gts 2, I = 2 - cumsum(fg) = [1, 0], U = 2 + cumsum(1 - fg) = [2, 2],
    # J = 1 - I/U = [0.5, 1] -> grad = [0.5, 1 - 0.5] = [0.5, 0.5]; loss = 1*0.5 + 0*0.5 = 0.5
    # = 1 - IoU of the hard prediction (I 1, U 2)
    loss = build_loss("lovasz", IGNORE)(hard_logits([1, 0]), row([1, 1]))
    assert loss.item() == pytest.approx(0.5, abs=1e-4)


# every pixel predicts p = [1/4, 3/4]: CE is ln 4 = 1.386294 on class 0 and ln(4/3) = 0.287682 on class 1
def quarter_logits(width: int):
    return logits_for([[0.25, 0.75]] * width)


def per_image_loss(cap: float = 10.0):
    return build_loss("per_image_weighted_cross_entropy", IGNORE, weight_cap=cap)


def test_per_image_weighted_cross_entropy_matches_hand_value():
    # target 0001: n_background 3, n_1 1 -> w0 = 3/3 = 1, w1 = 3/1 = 3
    # sum(w * ce) / sum(w) = (3*1*ln 4 + 3*ln(4/3)) / (3 + 3) = (1.386294 + 0.287682) / 2 = 0.836988
    loss = per_image_loss()(quarter_logits(4), row([0, 0, 0, 1]))
    assert loss.item() == pytest.approx((math.log(4) + math.log(4 / 3)) / 2, rel=1e-5)


def test_per_image_weights_are_capped():
    # cap 2: w1 = min(3, 2) = 2 -> (3*ln 4 + 2*ln(4/3)) / (3 + 2) = (4.158883 + 0.575364) / 5 = 0.946849
    loss = per_image_loss(cap=2.0)(quarter_logits(4), row([0, 0, 0, 1]))
    assert loss.item() == pytest.approx((3 * math.log(4) + 2 * math.log(4 / 3)) / 5, rel=1e-5)


def test_per_image_weights_ignore_unlabelled_pixels():
    # three ignored pixels predicted anything: neither counted as background (w1 would become 6) nor as loss
    logits = torch.cat([quarter_logits(4), logits_for([[0.99, 0.01]] * 3)], dim=3)
    loss = per_image_loss()(logits, row([0, 0, 0, 1, IGNORE, IGNORE, IGNORE]))
    assert loss.item() == pytest.approx((math.log(4) + math.log(4 / 3)) / 2, rel=1e-5)


def test_per_image_weights_are_computed_per_image_in_a_batch():
    # image A: target 0001, p = [1/4, 3/4] -> w = [1, 1, 1, 3]: sum w 6, sum w*ce = 3 ln 4 + 3 ln(4/3) = 3 ln(16/3)
    # image B: target 0111, p = [1/2, 1/2] -> n_bg 1, n_1 3 -> w = [1, 1/3, 1/3, 1/3]: sum w 2, sum w*ce = 2 ln 2
    # batch: (3 ln(16/3) + 2 ln 2) / 8 = (5.021929 + 1.386294) / 8 = 0.801028
    # (batch-wide counts 4 and 4 would give every pixel weight 1 -> 0.902394 instead)
    logits = torch.cat([quarter_logits(4), logits_for([[0.5, 0.5]] * 4)], dim=0)
    target = torch.tensor([[[0, 0, 0, 1]], [[0, 1, 1, 1]]])
    loss = per_image_loss()(logits, target)
    assert loss.item() == pytest.approx((3 * math.log(16 / 3) + 2 * math.log(2)) / 8, rel=1e-5)
    assert loss.item() == pytest.approx(0.801028, rel=1e-4)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_ignored_pixels_do_not_change_any_loss(name):
    torch.manual_seed(5)
    loss_fn = build_loss(name, IGNORE, class_weights=[1.0, 2.0, 3.0])
    logits, target = torch.randn(2, 3, 6, 6), torch.randint(0, 3, (2, 6, 6))
    ignored = torch.rand(2, 6, 6) < 0.3
    target[ignored] = IGNORE
    other_logits = torch.where(ignored.unsqueeze(1), torch.randn(2, 3, 6, 6) * 20, logits)
    assert not torch.equal(other_logits, logits)
    assert loss_fn(other_logits, target).item() == pytest.approx(loss_fn(logits, target).item(), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_perfect_hard_prediction_gives_a_loss_near_zero(name):
    # every labelled pixel right with probability 1 - e^-50; the ignored pixel is predicted wrongly on purpose
    pred = [0, 1, 2, 2, 1, 0]
    target = row([0, 1, 2, 2, 1, IGNORE])
    loss_fn = build_loss(name, IGNORE, class_weights=[1.0, 2.0, 3.0])
    assert loss_fn(hard_logits(pred, 3), target).item() == pytest.approx(0.0, abs=1e-4)
    # ... and a wrong prediction does not (so the check above can fail)
    assert loss_fn(hard_logits([1, 2, 0, 0, 2, 0], 3), target).item() > 0.1
