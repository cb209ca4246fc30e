import numpy as np
import pytest
import torch

from segtune import metrics

# target 0 0 1 1 2 2 / pred 0 1 1 1 2 0 -> matrix rows=true, cols=pred:
#   [[1, 1, 0],
#    [0, 2, 0],
#    [1, 0, 1]]
# IoU0 = 1 / (1 + 1 + 1) = 1/3; IoU1 = 2 / (2 + 1 + 0) = 2/3; IoU2 = 1 / (1 + 0 + 1) = 1/2
TARGET = torch.tensor([0, 0, 1, 1, 2, 2])
PRED = torch.tensor([0, 1, 1, 1, 2, 0])


def test_confusion_matrix_counts_true_rows_predicted_columns():
    matrix = metrics.confusion_matrix(TARGET, PRED, 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_iou_miou_and_pixel_accuracy_match_hand_computation():
    matrix = metrics.confusion_matrix(TARGET, PRED, 3).numpy()
    assert metrics.iou_per_class(matrix) == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert metrics.mean_iou(matrix) == pytest.approx(0.5)  # (1/3 + 2/3 + 1/2) / 3
    assert metrics.mean_iou(matrix, exclude=(0,)) == pytest.approx(7 / 12)  # (2/3 + 1/2) / 2
    assert metrics.pixel_accuracy(matrix) == pytest.approx(4 / 6)


def test_ignored_pixels_do_not_count():
    target = torch.cat([TARGET, torch.tensor([255, 255])])
    pred = torch.cat([PRED, torch.tensor([2, 1])])
    matrix = metrics.confusion_matrix(target, pred, 3, ignore_index=255)
    assert matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_matrix_over_batches_equals_matrix_over_whole_split():
    whole = metrics.confusion_matrix(TARGET, PRED, 3)
    halves = metrics.confusion_matrix(TARGET[:2], PRED[:2], 3) + metrics.confusion_matrix(TARGET[2:], PRED[2:], 3)
    assert torch.equal(whole, halves)
    # averaging per-batch mIoU would differ: first batch alone has mIoU 0.25 (classes 0, 1 at 1/2 and 0)
    assert metrics.mean_iou(metrics.confusion_matrix(TARGET[:2], PRED[:2], 3).numpy()) == pytest.approx(0.25)


def test_class_absent_from_truth_and_prediction_is_left_out_of_mean():
    matrix = np.array([[2, 0, 0], [0, 2, 0], [0, 0, 0]])
    assert np.isnan(metrics.iou_per_class(matrix)[2])
    assert metrics.mean_iou(matrix) == pytest.approx(1.0)
