"""Class weights from pixel counts, against numbers worked out by hand."""

import math

import numpy as np
import pytest

from segtune.class_weights import class_weights, median_frequency_weights, pixel_counts


def test_median_frequency_weights_are_capped():
    # frequencies 0.9, 0.09, 0.01; median 0.09 -> 0.1, 1, 9; cap 5 -> 5; absent class -> 0
    assert median_frequency_weights([900, 90, 10], cap=5.0) == pytest.approx([0.1, 1.0, 5.0])
    assert median_frequency_weights([900, 90, 10, 0], cap=50.0) == pytest.approx([0.1, 1.0, 9.0, 0.0])


def test_pixel_counts_skip_ignore_values():
    mask = np.array([[0, 1, 1, 255]], dtype=np.uint8)
    assert pixel_counts([mask, mask], 3) == [2, 4, 0]


# counts [3, 1] -> frequencies f = [0.75, 0.25]

def test_inverse_frequency_weights():
    # 1/f = [4/3, 4], mean 8/3 -> [0.5, 1.5]
    assert class_weights([3, 1], "inverse_frequency") == pytest.approx([0.5, 1.5])


def test_log_inverse_frequency_weights():
    # 1/ln(1.02 + f) = [1/ln 1.77, 1/ln 1.27] = [1/0.570980, 1/0.239017] = [1.751376, 4.183805]
    # mean 2.967590 -> [0.590168, 1.409832]
    raw = [1 / math.log(1.77), 1 / math.log(1.27)]
    expected = [w / (sum(raw) / 2) for w in raw]
    assert class_weights([3, 1], "log_inverse_frequency") == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx([0.590168, 1.409832], abs=1e-6)


def test_median_frequency_weights_are_not_rescaled():
    # median(0.75, 0.25) = 0.5 -> 0.5/f = [2/3, 2] (mean 4/3: median frequency keeps its own scale)
    assert class_weights([3, 1], "median_frequency") == pytest.approx([2 / 3, 2.0], abs=1e-6)


def test_effective_number_weights():
    # beta 0.99: (1 - b) / (1 - b^n): n=3 -> 0.01 / (1 - 0.970299) = 0.01 / 0.029701 = 0.336689; n=1 -> 0.01/0.01 = 1
    # mean 0.668345 -> [0.503766, 1.496234]
    raw = [0.01 / (1 - 0.99 ** 3), 1.0]
    expected = [w / (sum(raw) / 2) for w in raw]
    assert class_weights([3, 1], "effective_number", beta=0.99) == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx([0.503766, 1.496234], abs=1e-6)


def test_no_weighting_gives_ones():
    assert class_weights([3, 1], "none") == [1.0, 1.0]


def test_class_weights_are_capped():
    # inverse frequency [0.5, 1.5], cap 1.2 -> [0.5, 1.2]
    assert class_weights([3, 1], "inverse_frequency", cap=1.2) == pytest.approx([0.5, 1.2])


@pytest.mark.parametrize("scheme", ["inverse_frequency", "log_inverse_frequency", "median_frequency",
                                    "effective_number"])
def test_absent_class_gets_weight_zero_and_leaves_the_others_alone(scheme):
    # the present classes' weights are the same as without the empty class (mean taken over present ones)
    with_empty = class_weights([3, 1, 0], scheme, beta=0.99)
    assert with_empty[2] == 0.0
    assert with_empty[:2] == pytest.approx(class_weights([3, 1], scheme, beta=0.99))


def test_unknown_weighting_scheme_lists_the_schemes():
    with pytest.raises(KeyError, match="inverse_frequency.*effective_number"):
        class_weights([3, 1], "inverse")
