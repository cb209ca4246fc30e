"""Fit each candidate combiner on member probabilities of a set of images, in bounded memory.

Fitting reads a seeded sample, never all maps at once: up to `pixel_budget` pixels (per-pixel
combiners, greedy selection, best single) or `patch_budget` values in 32x32 windows (the 3x3 head).
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
"""In order of simplicity: on equal scores the simpler one is chosen."""
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
    patch_budget: int = 32_000_000
    """Floats of member probabilities held for the context head (128 MB)."""
    steps: int = 300
    greedy_rounds: int = 20


def fit_candidate(name: str, store: ProbabilityStore, masks: dict, ids: list[str], settings: FitSettings):
    members, classes = len(store.trial_ids), settings.num_classes
    if name == "mean":
        return WeightedMean([1.0] * members)
    if name == "context_head":
        return _fit_context_head(store, masks, ids, settings)
    probs, labels = sample_pixels(store, masks, ids, settings)
    if name == "best_single":
        scores = [_miou(probs[:, m], labels, settings) for m in range(members)]
        return WeightedMean(np.eye(members)[int(np.argmax(scores))])
    if name == "greedy":
        return WeightedMean(greedy_weights(probs, labels, settings))
    if name == "pixel_logistic":
        model = PixelLogistic(members, classes)
        keep = np.random.default_rng(settings.seed).permutation(len(labels))[:LOGISTIC_PIXELS]
        inputs = torch.from_numpy(probs[keep]).permute(1, 2, 0)[None, ..., None]  # one (N x 1) image: fast convs
        _train(model, lambda _: (inputs, torch.from_numpy(labels[keep])[None, :, None]), settings)
        return model.eval()
    raise ValueError(f"unknown ensemble candidate {name!r}; choose from {', '.join(CANDIDATES)}")


def greedy_weights(probs: np.ndarray, labels: np.ndarray, settings: FitSettings) -> np.ndarray:
    """Caruana et al.'s ensemble selection with replacement: add the member that most improves mIoU
    of the running average; keep the best set seen over the rounds (weights = times picked)."""
    members = probs.shape[1]
    counts, total = np.zeros(members), np.zeros_like(probs[:, 0])
    best_counts, best_score = None, -1.0
    for _ in range(settings.greedy_rounds):
        scores = [_miou((total + probs[:, m]) / (counts.sum() + 1), labels, settings) for m in range(members)]
        pick = int(np.argmax(scores))
        counts[pick] += 1
        total += probs[:, pick]
        if scores[pick] > best_score:
            best_counts, best_score = counts.copy(), scores[pick]
    return best_counts


def sample_pixels(store: ProbabilityStore, masks: dict, ids: list[str], settings: FitSettings):
    """(N, M, K) member probabilities and (N,) labels at seeded random labelled pixels, spread over the images."""
    rng = np.random.default_rng(settings.seed)
    per_image = max(1, settings.pixel_budget // max(len(ids), 1))
    probs, labels = [], []
    for image_id in ids:
        mask = masks[image_id]
        rows, cols = np.nonzero(mask < settings.num_classes)
        if rows.size == 0:
            continue
        pick = rng.choice(rows.size, min(per_image, rows.size), replace=False)
        stack = store.stack(image_id)
        probs.append(stack[:, :, rows[pick], cols[pick]].transpose(2, 0, 1))
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
