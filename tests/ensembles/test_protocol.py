"""Combiners, fitting and the cross-validation protocol on hand-made probability maps."""

import numpy as np
import pytest
import torch

from ensembles import fit as fit_module
from ensembles.combine import ContextHead, PixelLogistic, WeightedMean
from ensembles.bootstrap import bootstrap_intervals
from ensembles.fit import FitSettings, Fitted, fit_candidate, greedy_weights, sample_pixels
from ensembles.probabilities import ProbabilityStore
from ensembles.protocol import evaluate_candidates, make_folds, score

K = 3


def one_hot(labels: np.ndarray, confidence: float = 0.8) -> np.ndarray:
    """(H, W) labels -> (K, H, W) probabilities with `confidence` on the label."""
    probs = np.full((K, *labels.shape), (1 - confidence) / (K - 1), dtype=np.float32)
    for k in range(K):
        probs[k][labels == k] = confidence
    return probs


def make_store(tmp_path, maps: dict[str, dict[str, np.ndarray]]) -> ProbabilityStore:
    """maps[trial_id][image_id] = (K, H, W) probabilities, written as float16 like the real store."""
    for trial_id, images in maps.items():
        (tmp_path / trial_id).mkdir(parents=True)
        for image_id, probs in images.items():
            np.save(tmp_path / trial_id / f"{image_id}.npy", probs.astype(np.float16))
    return ProbabilityStore(tmp_path, list(maps))


def striped_masks(count: int, size=(16, 16)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {f"img{i}": rng.integers(0, K, size).astype(np.uint8) for i in range(count)}


def test_weighted_mean_averages_member_probabilities_with_its_weights():
    probs = torch.tensor([[0.2, 0.8], [0.6, 0.4]]).view(1, 2, 2, 1, 1)  # 2 members, 2 classes
    out = WeightedMean([3.0, 1.0])(probs)  # weights normalise to 0.75 / 0.25
    assert torch.allclose(out.view(2), torch.tensor([0.75 * 0.2 + 0.25 * 0.6, 0.75 * 0.8 + 0.25 * 0.4]))


@pytest.mark.parametrize("combiner", [PixelLogistic(2, 2), ContextHead(2, 2)])
def test_unfitted_stackers_start_at_the_geometric_mean(combiner):
    probs = torch.tensor([[0.2, 0.8], [0.6, 0.4]]).view(1, 2, 2, 1, 1).expand(1, 2, 2, 3, 3).contiguous()
    geometric = torch.tensor([np.sqrt(0.2 * 0.6), np.sqrt(0.8 * 0.4)], dtype=torch.float32)
    expected = geometric / geometric.sum()  # 0.3333 / 0.6667 by hand: sqrt(.12)=.3464, sqrt(.32)=.5657
    assert torch.allclose(combiner(probs)[0, :, 1, 1], expected, atol=1e-5)


def test_score_counts_pixels_of_whole_images_in_one_matrix(tmp_path):
    labels = np.array([[0, 1], [2, 2]], dtype=np.uint8)
    wrong = np.array([[0, 1], [2, 0]], dtype=np.uint8)  # one class-2 pixel predicted as 0
    store = make_store(tmp_path, {"t": {"a": one_hot(wrong)}})
    matrix = score(Fitted(["t"], WeightedMean([1.0])), store, {"a": labels}, ["a"], K)
    assert matrix.tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]


def test_sample_pixels_skips_ignored_pixels_and_keeps_member_order(tmp_path):
    labels = np.array([[0, 255], [2, 1]], dtype=np.uint8)
    store = make_store(tmp_path, {"good": {"a": one_hot(labels.clip(0, 2))}, "flat": {"a": np.full((K, 2, 2), 1 / K)}})
    probs, sampled = sample_pixels(store, {"a": labels}, ["a"], FitSettings(K))
    assert sorted(sampled.tolist()) == [0, 1, 2]  # the ignored pixel is never sampled
    assert probs.shape == (3, 2, K)
    assert np.allclose(probs[:, 0].argmax(1), sampled) and np.allclose(probs[:, 1], 1 / K, atol=1e-3)


def test_greedy_selection_picks_the_member_that_helps_and_keeps_the_best_round():
    labels = np.array([0, 1, 2, 0, 1, 2])
    perfect = np.eye(K)[labels] * 0.9 + 0.1 / K
    wrong = np.eye(K)[(labels + 1) % K]
    probs = np.stack([wrong, perfect], 1).astype(np.float32)  # (N, M, K)
    weights = greedy_weights(probs, labels, FitSettings(K, greedy_rounds=4))
    assert weights.tolist() == [0.0, 1.0]  # perfect alone is never beaten, so the first round is kept


def test_make_folds_partitions_the_images_reproducibly():
    ids = [f"i{n}" for n in range(7)]
    folds = make_folds(ids, 3, seed=0)
    assert len(folds) == 3 and sorted(sum(folds, [])) == ids
    assert folds == make_folds(ids, 3, seed=0)
    assert len(make_folds(ids[:2], 5, seed=0)) == 2  # never more folds than images
    with pytest.raises(ValueError, match="at least 2 validation images"):
        make_folds(ids[:1], 5, seed=0)


@pytest.mark.slow  # fits every candidate on every fold
def test_protocol_chooses_by_cross_validation_and_never_fits_on_test(tmp_path, monkeypatch):
    masks = striped_masks(8)
    val, test = [f"img{i}" for i in range(6)], ["img6", "img7"]
    noise = np.random.default_rng(1)
    maps = {"good": {i: one_hot(m, 0.7) for i, m in masks.items()},
            "noisy": {i: one_hot(noise.integers(0, K, m.shape).astype(np.uint8), 0.9) for i, m in masks.items()}}
    store = make_store(tmp_path, maps)
    fitted_on = []
    original = fit_module.fit_candidate

    def spy(name, store_, masks_, ids, settings):
        fitted_on.extend(ids)
        return original(name, store_, masks_, ids, settings)

    monkeypatch.setattr("ensembles.protocol.fit_candidate", spy)
    evaluation = evaluate_candidates(store, masks, val, test, FitSettings(K, steps=60), folds=3, log=lambda _: None)
    assert not set(fitted_on) & set(test)
    rows = {r["candidate"]: r for r in evaluation.table((), ["a", "b", "c"], bootstrap_intervals(
        evaluation.test_matrices, "best_single"))}
    assert rows["best_single"]["cv_miou"] == pytest.approx(1.0)  # "good" is right on every pixel
    assert rows["best_single"]["test_miou"] == pytest.approx(1.0)
    assert rows["mean"]["cv_miou"] < 1.0  # averaging in the noisy member costs pixels
    assert evaluation.chosen == "best_single"  # ties with greedy/stackers go to the simpler candidate
    assert rows[evaluation.chosen]["chosen"]


def test_unknown_candidate_is_refused_before_any_fitting(tmp_path):
    store = make_store(tmp_path, {"t": {"a": one_hot(np.zeros((4, 4), np.uint8))}})
    with pytest.raises(ValueError, match="unknown \\['median'\\]"):
        evaluate_candidates(store, {"a": np.zeros((4, 4), np.uint8)}, ["a"], [], FitSettings(K), candidates=("median",))


@pytest.mark.slow  # 200 optimisation steps per stacker
def test_stackers_learn_to_trust_the_right_member(tmp_path):
    masks = striped_masks(4)
    maps = {"flipped": {i: one_hot((m + 1) % K, 0.9) for i, m in masks.items()},
            "weak": {i: one_hot(m, 0.4) for i, m in masks.items()}}
    store = make_store(tmp_path, maps)
    ids = list(masks)
    for name in ("pixel_logistic", "context_head"):
        combiner = fit_candidate(name, store, masks, ids, FitSettings(K, steps=200))
        matrix = score(combiner, store, masks, ids, K)
        assert combiner.trial_ids == ["flipped", "weak"] and combiner.weights is None
        # the geometric mean follows the confident, wrong member; the fitted stacker learns the mapping
        assert np.trace(matrix) / matrix.sum() > 0.95, name
    assert score(Fitted(["flipped", "weak"], WeightedMean([1, 1])), store, masks, ids, K).trace() / (4 * 256) < 0.5


# Greedy selection by hand: ten pixels, two classes, p = each member's probability of class 1.
#   pixel:        P1   P2   P3   P4   P5   P6   Q1   Q2   Q3   Q4
#   label:         1    1    0    0    0    0    1    1    1    0
#   best (A):     .40  .40  .30  .10  .10  .10  .90  .90  .90  .10   wrong on P1, P2
#   different (B): .90 .90  .80  .65  .65  .65  .90  .90  .90  .10   wrong on P3-P6 (weaker), right on P1, P2
#   dark (D):      0    0    0    0    0    0    0    0    0    0    says class 0 everywhere
# With w the share of B in the average: P1, P2 need w > 0.2; P3 needs w < 0.4; P4-P6 need w < 8/11.
#   A alone (w 0):      2 errors, IoU 5/7 and 3/5      -> mIoU 0.657 (best single: B 0.378, D 0.25)
#   A + B (w 1/2):      P3 wrong, IoU 4/5 and 5/6      -> 0.817: the weaker, different member joins
#   A + A + B (w 1/3):  no error                        -> 1.0: A picked again (a repeat)
#   then 3A + B (w 1/4) is also 1.0, no improvement: selection stops with A x2, B x1.
SELECTION_LABELS = np.array([1, 1, 0, 0, 0, 0, 1, 1, 1, 0])
SELECTION_P1 = {"best": [.4, .4, .3, .1, .1, .1, .9, .9, .9, .1],
                "different": [.9, .9, .8, .65, .65, .65, .9, .9, .9, .1],
                "dark": [0.0] * 10}


def selection_probs() -> np.ndarray:
    """(N, M, 2) probabilities of the table above, members in its order."""
    p1 = np.array(list(SELECTION_P1.values()), dtype=np.float32).T
    return np.stack([1 - p1, p1], -1)


def test_greedy_selection_adds_a_weaker_different_member_and_repeats_the_best():
    weights = greedy_weights(selection_probs(), SELECTION_LABELS, FitSettings(2))
    assert weights.tolist() == [2.0, 1.0, 0.0]


def test_greedy_selection_stops_at_its_largest_size():
    assert greedy_weights(selection_probs(), SELECTION_LABELS, FitSettings(2, greedy_rounds=2)).tolist() == [1, 1, 0]


def test_the_library_candidate_selects_from_its_own_pool_inside_each_fold(tmp_path):
    # six validation and two test images, each the ten pixels above as a 2x5 map
    labels = SELECTION_LABELS.reshape(2, 5).astype(np.uint8)
    ids = [f"img{i}" for i in range(8)]
    probs = selection_probs()
    maps = {name: {i: probs[:, m].T.reshape(2, 2, 5) for i in ids} for m, name in enumerate(SELECTION_P1)}
    store = make_store(tmp_path, maps)
    masks = {i: labels for i in ids}
    wanted = []
    evaluation = evaluate_candidates(store, masks, ids[:6], ids[6:], FitSettings(2), folds=3,
                                     candidates=("library", "greedy"),
                                     pools={"greedy": ["best"], "library": ["best", "different", "dark"]},
                                     log=lambda _: None, before_test=wanted.extend)
    library, greedy = evaluation.fitted["library"], evaluation.fitted["greedy"]
    assert (library.trial_ids, library.weights) == (["best", "different"], [2.0, 1.0])  # "dark" is not carried
    assert (greedy.trial_ids, greedy.weights) == (["best"], [1.0])  # the top-k pool alone cannot improve
    assert evaluation.chosen == "library" and list(evaluation.fitted) == ["greedy", "library"]  # simpler first
    assert sorted(wanted) == ["best", "different"]  # test maps are needed of these members only
    assert evaluation.test_matrices["library"].shape == (2, 2, 2)
    rows = evaluation.table((), ["0", "1"], bootstrap_intervals(evaluation.test_matrices, None))
    by_name = {r["candidate"]: r for r in rows}
    assert by_name["library"]["cv_miou"] == pytest.approx(1.0)
    assert by_name["greedy"]["cv_miou"] == pytest.approx((5 / 7 + 3 / 5) / 2)
    assert by_name["library"]["members"] == "best x2 different x1"


def test_the_pixel_sample_shrinks_with_many_members(tmp_path):
    labels = np.zeros((10, 10), dtype=np.uint8)
    store = make_store(tmp_path, {f"t{m}": {"a": one_hot(labels)} for m in range(4)})
    # 4 members x 3 classes = 12 floats a pixel: a budget of 240 floats holds 20 pixels
    probs, _ = sample_pixels(store, {"a": labels}, ["a"], FitSettings(K, sample_floats=240))
    assert probs.shape == (20, 4, K)
