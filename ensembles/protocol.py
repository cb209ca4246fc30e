"""The honest protocol: choose by cross-validation on validation images, touch test once.

1. Validation images are split into folds (seeded). For each fold, every candidate is fitted on the
   other folds and scored on it; the scores of all folds add up in one confusion matrix per candidate.
   A candidate's pool is the members it may use: the top k for most, every trial that kept its
   validation maps for the library, whose greedy selection is rerun inside each fold.
2. The candidate with the best cross-validated mIoU is chosen (the simpler one on a tie).
3. Every candidate is refitted on all validation images and scored once on test, one confusion matrix
   per test image (for the bootstrap intervals), for the table. Where the members are fold models (a refit's,
   whose test maps come per fold too), a candidate that is not a weighted mean is scored as the exported
   ensemble applies it: per fold, the outputs averaged (combine.PerFold).
Nothing is fitted or chosen on test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ensembles.bootstrap import CandidateIntervals
from ensembles.combine import PER_FOLD, PerFold, fold_form
from ensembles.fit import CANDIDATES, ORDER, FitSettings, Fitted, fit_candidate
from ensembles.probabilities import ProbabilityStore
from segtune.metrics import confusion_matrix, iou_per_class, mean_iou

BASELINE = "best_single"
"""What every gain is measured against."""


@dataclass
class Evaluation:
    cv_matrices: dict[str, np.ndarray]
    test_matrices: dict[str, np.ndarray]
    """(N, K, K): one confusion matrix per test image, in test order."""
    fitted: dict[str, Fitted]
    """Each candidate fitted on all validation images."""
    chosen: str
    folds: list[list[str]]

    def table(self, exclude: tuple[int, ...], class_names: list[str],
              intervals: dict[str, CandidateIntervals]) -> list[dict]:
        rows = []
        for name, fitted in self.fitted.items():
            test = self.test_matrices[name].sum(0)
            miou, gain = intervals[name].miou, intervals[name].gain
            row = {"candidate": name, "chosen": name == self.chosen, "members": members_text(fitted),
                   "cv_miou": mean_iou(self.cv_matrices[name], exclude),
                   # NaN when the search kept no test split
                   "test_miou": mean_iou(test, exclude) if test.any() else float("nan"),
                   "test_miou_low": miou.low, "test_miou_high": miou.high,
                   "gain": gain.value, "gain_low": gain.low, "gain_high": gain.high,
                   "gain_verdict": "" if name == BASELINE else gain.verdict()}
            for split, matrix in (("cv", self.cv_matrices[name]), ("test", test)):
                row.update({f"{split}_iou_{c}": float(v) for c, v in zip(class_names, iou_per_class(matrix))})
            if intervals[name].draws.note():  # resamples missing a scored class were discarded
                row["interval_note"] = intervals[name].draws.note()
            rows.append(row)
        return rows


def members_text(fitted: Fitted) -> str:
    """'a x3 b x1' for a weighted mean (its weights, repeat counts for greedy selection), 'a b' for a stacker."""
    if fitted.weights is None:
        return " ".join(fitted.trial_ids)
    return " ".join(f"{t} x{w:g}" for t, w in zip(fitted.trial_ids, fitted.weights))


def make_folds(ids: list[str], folds: int, seed: int) -> list[list[str]]:
    if len(ids) < 2:
        raise ValueError(f"cross-validation needs at least 2 validation images; the search has {len(ids)}")
    order = list(np.random.default_rng(seed).permutation(ids))
    count = max(2, min(folds, len(ids)))
    return [sorted(order[i::count]) for i in range(count)]


@torch.no_grad()
def image_matrices(fitted: Fitted, store: ProbabilityStore, masks: dict, ids: list[str], num_classes: int,
                   folds: list[ProbabilityStore] = ()) -> np.ndarray:
    """(N, K, K): one confusion matrix per image, one image's maps in memory at a time; `folds` as for
    combined_probabilities."""
    matrices = np.zeros((len(ids), num_classes, num_classes), dtype=np.int64)
    for n, image_id in enumerate(ids):
        probs = combined_probabilities(fitted, store, image_id, folds)
        matrices[n] = confusion_matrix(torch.from_numpy(masks[image_id].astype(np.int64)), probs.argmax(1)[0],
                                       num_classes).numpy()
    return matrices


@torch.no_grad()
def combined_probabilities(fitted: Fitted, store: ProbabilityStore, image_id: str,
                           folds: list[ProbabilityStore] = ()) -> torch.Tensor:
    """(1, K, H, W): the candidate on one image, from its members' maps in `store`; with `folds` (one store a fold
    model, probabilities.fold_stores: members made of fold models, `store` holding their averages) a combiner
    fold_form says PER_FOLD is applied per fold and averaged, as the exported ensemble does."""
    if folds and fold_form(fitted.combiner) == PER_FOLD:
        maps = np.stack([fold.subset(fitted.trial_ids).stack(image_id) for fold in folds])  # (F, M, K, H, W)
        return PerFold(fitted.combiner)(torch.from_numpy(maps)[None])
    return fitted.combiner(torch.from_numpy(store.subset(fitted.trial_ids).stack(image_id))[None])


def score(fitted: Fitted, store: ProbabilityStore, masks: dict, ids: list[str], num_classes: int) -> np.ndarray:
    """One confusion matrix over whole images."""
    return image_matrices(fitted, store, masks, ids, num_classes).sum(0)


def evaluate_candidates(store: ProbabilityStore, masks: dict, val_ids: list[str], test_ids: list[str],
                        settings: FitSettings, folds: int = 5, candidates=CANDIDATES,
                        pools: dict[str, list[str]] | None = None, log=print,
                        before_test: Callable[[list[str]], None] = lambda trial_ids: None,
                        test_folds: list[ProbabilityStore] = ()) -> Evaluation:
    """pools: candidate -> the trial ids it may use (default: every member of the store);
    before_test(trial_ids) is called with the members the fitted candidates use before test is scored
    (build writes their test maps then); test_folds: each fold model's test maps (a refit exporting fold models),
    on which test scores the candidates combined_probabilities applies per fold."""
    unknown = [c for c in candidates if c not in ORDER]
    if unknown:
        raise ValueError(f"option candidates: unknown {unknown}; choose from {', '.join(ORDER)}")
    candidates = sorted(candidates, key=ORDER.index)  # a tie goes to the simpler candidate
    k = settings.num_classes
    pool = {name: store.subset((pools or {}).get(name, store.trial_ids)) for name in candidates}
    split = make_folds(val_ids, folds, settings.seed)
    cv = {name: np.zeros((k, k), dtype=np.int64) for name in candidates}
    for number, held_out in enumerate(split, 1):
        fitting = [i for i in val_ids if i not in set(held_out)]
        for name in candidates:
            cv[name] += score(fit_candidate(name, pool[name], masks, fitting, settings), store, masks, held_out, k)
        log(f"  fold {number}/{len(split)}: " + ", ".join(f"{n} {mean_iou(cv[n], settings.exclude):.3f}" for n in candidates))
    chosen = candidates[0]
    for name in candidates[1:]:
        if mean_iou(cv[name], settings.exclude) > mean_iou(cv[chosen], settings.exclude) + 1e-9:
            chosen = name
    fitted = {name: fit_candidate(name, pool[name], masks, val_ids, settings) for name in candidates}
    before_test(list(dict.fromkeys(t for f in fitted.values() for t in f.trial_ids)))
    test = {name: image_matrices(fitted[name], store, masks, test_ids, k, test_folds) for name in candidates}
    return Evaluation(cv, test, fitted, chosen, split)
