"""The honest protocol: choose by cross-validation on validation images, touch test once.

1. Validation images are split into folds (seeded). For each fold, every candidate is fitted on the
   other folds and scored on it; the scores of all folds add up in one confusion matrix per candidate.
2. The candidate with the best cross-validated mIoU is chosen (the simpler one on a tie).
3. Every candidate is refitted on all validation images and scored once on test, for the table.
Nothing is fitted or chosen on test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ensembles.fit import CANDIDATES, FitSettings, fit_candidate
from ensembles.probabilities import ProbabilityStore
from segtune.metrics import confusion_matrix, iou_per_class, mean_iou


@dataclass
class Evaluation:
    cv_matrices: dict[str, np.ndarray]
    test_matrices: dict[str, np.ndarray]
    combiners: dict[str, torch.nn.Module]
    """Each candidate fitted on all validation images."""
    chosen: str
    folds: list[list[str]]

    def table(self, exclude: tuple[int, ...], class_names: list[str]) -> list[dict]:
        rows = []
        for name in self.combiners:
            row = {"candidate": name, "chosen": name == self.chosen,
                   "cv_miou": mean_iou(self.cv_matrices[name], exclude),
                   # NaN when the search kept no test split
                   "test_miou": mean_iou(self.test_matrices[name], exclude) if self.test_matrices[name].any() else float("nan")}
            for split, matrix in (("cv", self.cv_matrices[name]), ("test", self.test_matrices[name])):
                row.update({f"{split}_iou_{c}": float(v) for c, v in zip(class_names, iou_per_class(matrix))})
            rows.append(row)
        return rows


def make_folds(ids: list[str], folds: int, seed: int) -> list[list[str]]:
    if len(ids) < 2:
        raise ValueError(f"cross-validation needs at least 2 validation images; the search has {len(ids)}")
    order = list(np.random.default_rng(seed).permutation(ids))
    count = max(2, min(folds, len(ids)))
    return [sorted(order[i::count]) for i in range(count)]


@torch.no_grad()
def score(combiner: torch.nn.Module, store: ProbabilityStore, masks: dict, ids: list[str], num_classes: int) -> np.ndarray:
    """One confusion matrix over whole images, one image in memory at a time."""
    matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for image_id in ids:
        probs = combiner(torch.from_numpy(store.stack(image_id))[None])
        matrix += confusion_matrix(torch.from_numpy(masks[image_id].astype(np.int64)), probs.argmax(1)[0], num_classes)
    return matrix.numpy()


def evaluate_candidates(store: ProbabilityStore, masks: dict, val_ids: list[str], test_ids: list[str],
                        settings: FitSettings, folds: int = 5, candidates=CANDIDATES, log=print) -> Evaluation:
    unknown = [c for c in candidates if c not in CANDIDATES]
    if unknown:
        raise ValueError(f"option candidates: unknown {unknown}; choose from {', '.join(CANDIDATES)}")
    k = settings.num_classes
    split = make_folds(val_ids, folds, settings.seed)
    cv = {name: np.zeros((k, k), dtype=np.int64) for name in candidates}
    for number, held_out in enumerate(split, 1):
        fitting = [i for i in val_ids if i not in set(held_out)]
        for name in candidates:
            cv[name] += score(fit_candidate(name, store, masks, fitting, settings), store, masks, held_out, k)
        log(f"  fold {number}/{len(split)}: " + ", ".join(f"{n} {mean_iou(cv[n], settings.exclude):.3f}" for n in candidates))
    chosen = candidates[0]
    for name in candidates[1:]:
        if mean_iou(cv[name], settings.exclude) > mean_iou(cv[chosen], settings.exclude) + 1e-9:
            chosen = name
    combiners = {name: fit_candidate(name, store, masks, val_ids, settings) for name in candidates}
    test = {name: score(combiners[name], store, masks, test_ids, k) for name in candidates}
    return Evaluation(cv, test, combiners, chosen, split)
