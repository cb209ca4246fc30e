"""Fit each candidate combiner on member probabilities of a set of images, in bounded memory.

Fitting reads a seeded sample, never all maps at once: up to `pixel_budget` pixels (per-pixel
combiners, greedy selection, best single; fewer when many members would make the sample exceed
`sample_floats`) or `patch_budget` values in 32x32 windows (the 3x3 head).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ensembles.combine import ContextHead, PixelLogistic, WeightedMean
from ensembles.probabilities import ProbabilityStore
from segtune.metrics import confusion_matrix, mean_iou

CANDIDATES = ("best_single", "mean", "greedy", "pixel_logistic", "context_head")
"""The candidates over the top-k members, in order of simplicity: on equal scores the simpler one is chosen."""
LIBRARY = "library"
"""Greedy selection over every trial that kept its validation probabilities (`--select library`), not only the top k."""
ORDER = ("best_single", "mean", "greedy", LIBRARY, "pixel_logistic", "context_head")
"""Every candidate in order of simplicity (library is greedy selection over a larger pool)."""
PATCH = 32
LOGISTIC_PIXELS = 100_000
"""Pixels the per-pixel logistic regression is fitted on: ample for its M*K*K + K weights."""


@dataclass(frozen=True)
class FitSettings:
    num_classes: int
    exclude: tuple[int, ...] = ()
    """Classes left out of the mean IoU (as in the search)."""
    seed: int = 0
    pixel_budget: int = 400_000
    sample_floats: int = 48_000_000
    """Floats of member probabilities the pixel sample may hold (192 MB): a library of 40 trials gets fewer pixels."""
    patch_budget: int = 32_000_000
    """Floats of member probabilities held for the context head (128 MB)."""
    steps: int = 300
    greedy_rounds: int = 20
    """Most picks of greedy selection (the largest ensemble it may build, repeats counted)."""


@dataclass
class Fitted:
    """A fitted candidate: the members its combiner takes, in that order, and the combiner."""
    trial_ids: list[str]
    combiner: torch.nn.Module
    weights: list[float] | None = None
    """A weighted mean's weight per member (greedy and library: times picked); None for a stacker."""


def fit_candidate(name: str, store: ProbabilityStore, masks: dict, ids: list[str], settings: FitSettings) -> Fitted:
    """Fit `name` on the images `ids` over the members of `store`; a weighted mean keeps only the members it weighs."""
    members, classes = len(store.trial_ids), settings.num_classes
    if name == "mean":
        return _weighted_mean(store.trial_ids, [1.0] * members)
    if name == "context_head":
        return Fitted(store.trial_ids, _fit_context_head(store, masks, ids, settings))
    probs, labels = sample_pixels(store, masks, ids, settings)
    if name == "best_single":
        scores = [_miou(probs[:, m], labels, settings) for m in range(members)]
        return _weighted_mean(store.trial_ids, np.eye(members)[int(np.argmax(scores))])
    if name in ("greedy", LIBRARY):
        return _weighted_mean(store.trial_ids, greedy_weights(probs, labels, settings))
    if name == "pixel_logistic":
        model = PixelLogistic(members, classes)
        keep = np.random.default_rng(settings.seed).permutation(len(labels))[:LOGISTIC_PIXELS]
        inputs = torch.from_numpy(probs[keep]).permute(1, 2, 0)[None, ..., None]  # one (N x 1) image: fast convs
        _train(model, lambda _: (inputs, torch.from_numpy(labels[keep])[None, :, None]), settings)
        return Fitted(store.trial_ids, model.eval())
    raise ValueError(f"unknown ensemble candidate {name!r}; choose from {', '.join(ORDER)}")


def _weighted_mean(trial_ids: list[str], weights) -> Fitted:
    """A weighted mean over the members of nonzero weight only: the exported ensemble runs no idle network."""
    kept = [(t, float(w)) for t, w in zip(trial_ids, weights) if w > 0]
    return Fitted([t for t, _ in kept], WeightedMean([w for _, w in kept]), [w for _, w in kept])


def greedy_weights(probs: np.ndarray, labels: np.ndarray, settings: FitSettings) -> np.ndarray:
    """Caruana et al. (2004) ensemble selection with replacement: start from the best single member, then
    repeatedly add the member (repeats allowed) that most improves the mIoU of the running average; stop
    when no member improves it or after settings.greedy_rounds picks. Weights = times picked."""
    members = probs.shape[1]
    counts, total, best = np.zeros(members), np.zeros_like(probs[:, 0]), -1.0
    for _ in range(settings.greedy_rounds):
        scores = [_miou((total + probs[:, m]) / (counts.sum() + 1), labels, settings) for m in range(members)]
        pick = int(np.argmax(scores))  # the first (best-ranked) member on a tie
        if scores[pick] <= best:
            break
        counts[pick] += 1
        total += probs[:, pick]
        best = scores[pick]
    return counts


def sample_pixels(store: ProbabilityStore, masks: dict, ids: list[str], settings: FitSettings):
    """(N, M, K) member probabilities and (N,) labels at seeded random labelled pixels, spread over the images."""
    rng = np.random.default_rng(settings.seed)
    budget = min(settings.pixel_budget, settings.sample_floats // (len(store.trial_ids) * settings.num_classes))
    per_image = max(1, budget // max(len(ids), 1))
    probs, labels = [], []
    for image_id in ids:
        mask = masks[image_id]
        rows, cols = np.nonzero(mask < settings.num_classes)
        if rows.size == 0:
            continue
        pick = np.sort(rng.choice(rows.size, min(per_image, rows.size), replace=False))
        probs.append(store.pixels(image_id, rows[pick], cols[pick]))
        labels.append(mask[rows[pick], cols[pick]].astype(np.int64))
    if not probs:
        raise ValueError("no labelled pixel in the images the ensemble is fitted on")
    return np.ascontiguousarray(np.concatenate(probs)), np.concatenate(labels)


def _fit_context_head(store: ProbabilityStore, masks: dict, ids: list[str], settings: FitSettings):
    members, classes = len(store.trial_ids), settings.num_classes
    rng = np.random.default_rng(settings.seed)
    size = min(PATCH, *(min(masks[i].shape) for i in ids))
    count = max(len(ids), settings.patch_budget // (members * classes * size * size))
    windows, labels = [], []
    for image_id in ids:  # one image's maps in memory at a time; each pixel in about 4 windows at most
        mask, stack = masks[image_id], store.stack(image_id)
        for _ in range(min(count // len(ids), 4 * mask.size // (size * size))):
            top, left = (int(rng.integers(0, mask.shape[d] - size + 1)) for d in (0, 1))
            windows.append(stack[:, :, top:top + size, left:left + size])
            labels.append(mask[top:top + size, left:left + size].astype(np.int64))
    inputs, targets = torch.from_numpy(np.stack(windows)), torch.from_numpy(np.stack(labels))
    targets[targets >= classes] = -100  # ignored and padding pixels

    def batch(step: int):
        chosen = torch.from_numpy(np.random.default_rng((settings.seed, step)).choice(len(inputs), min(32, len(inputs))))
        return inputs[chosen], targets[chosen]

    model = ContextHead(members, classes)
    _train(model, batch, settings)
    return model.eval()


def _train(model: torch.nn.Module, batch, settings: FitSettings) -> None:
    torch.manual_seed(settings.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(settings.steps):
        inputs, targets = batch(step)
        targets = torch.where(targets < settings.num_classes, targets, torch.full_like(targets, -100))
        if not (targets != -100).any():
            continue
        loss = F.nll_loss(torch.log(model(inputs).clamp_min(1e-8)), targets, ignore_index=-100)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _miou(probs: np.ndarray, labels: np.ndarray, settings: FitSettings) -> float:
    """mIoU of (N, K) probabilities against (N,) labels."""
    matrix = confusion_matrix(torch.from_numpy(labels), torch.from_numpy(probs.argmax(-1)), settings.num_classes)
    return mean_iou(matrix.numpy(), settings.exclude)
