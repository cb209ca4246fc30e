"""Segmentation metrics from one confusion matrix accumulated over a whole split.

Per-batch scores are never averaged: a batch adds its pixel counts to the matrix and IoU is
computed once at the end, so the score does not depend on batch size or image order.
"""

from __future__ import annotations

import numpy as np
import torch


def confusion_matrix(target: torch.Tensor, pred: torch.Tensor, num_classes: int,
                     ignore_index: int | None = None) -> torch.Tensor:
    """Count pixels as matrix[true class, predicted class]; ignored pixels are left out."""
    target = target.reshape(-1).long()
    pred = pred.reshape(-1).long()
    keep = (target >= 0) & (target < num_classes)
    if ignore_index is not None:
        keep &= target != ignore_index
    index = target[keep] * num_classes + pred[keep]
    counts = torch.bincount(index, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def iou_per_class(matrix: np.ndarray) -> np.ndarray:
    """IoU = TP / (TP + FP + FN) per class; NaN for a class absent from both truth and prediction."""
    matrix = np.asarray(matrix, dtype=np.float64)
    true_positive = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, true_positive / np.maximum(union, 1), np.nan)


def mean_iou(matrix: np.ndarray, exclude: tuple[int, ...] = ()) -> float:
    """Mean of per-class IoU over the classes present, leaving the `exclude` classes out of the mean."""
    ious = iou_per_class(matrix)
    keep = [c for c in range(len(ious)) if c not in set(exclude) and not np.isnan(ious[c])]
    return float(np.mean(ious[keep])) if keep else 0.0


def pixel_accuracy(matrix: np.ndarray) -> float:
    matrix = np.asarray(matrix, dtype=np.float64)
    total = matrix.sum()
    return float(np.trace(matrix) / total) if total > 0 else 0.0
