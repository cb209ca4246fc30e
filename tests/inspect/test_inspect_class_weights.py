"""Suggested class weights in the report: every class_weighting scheme, against hand-worked numbers."""

from __future__ import annotations

import pytest

from segtune.inspect import suggest_class_weights

COUNTS = [600, 300, 100, 0]   # pixels per class; frequencies 0.6, 0.3, 0.1 and an absent class


def test_every_scheme_but_none_is_suggested():
    assert set(suggest_class_weights(COUNTS)) == {"inverse_frequency", "log_inverse_frequency", "median_frequency",
                                                  "effective_number"}


def test_inverse_frequency():
    # 1/f = 1.6667, 3.3333, 10 -> mean 5 -> scaled to mean 1: 0.3333, 0.6667, 2.0; absent class 0
    assert suggest_class_weights(COUNTS)["inverse_frequency"] == pytest.approx([1 / 3, 2 / 3, 2.0, 0.0], abs=1e-6)


def test_log_scaled_inverse_frequency():
    # ENet 1/ln(1.02 + f): 1/ln 1.62 = 2.07286, 1/ln 1.32 = 3.60189, 1/ln 1.12 = 8.82389; mean 4.83288
    # -> 2.07286/4.83288 = 0.42891, 3.60189/4.83288 = 0.74529, 8.82389/4.83288 = 1.82580
    assert suggest_class_weights(COUNTS)["log_inverse_frequency"] == pytest.approx([0.42891, 0.74529, 1.82580, 0.0],
                                                                                   abs=1e-4)


def test_median_frequency():
    # median of 0.6, 0.3, 0.1 is 0.3 -> 0.3/0.6 = 0.5, 0.3/0.3 = 1, 0.3/0.1 = 3 (under the cap of 10)
    assert suggest_class_weights(COUNTS)["median_frequency"] == pytest.approx([0.5, 1.0, 3.0, 0.0])


def test_effective_number_of_samples():
    # beta 0.9999: (1 - beta) / (1 - beta**n): n=600 -> 1e-4 / (1 - e^-0.060003) = 1e-4 / 0.058238 = 0.0017171,
    # n=300 -> 1e-4 / 0.029556 = 0.0033834, n=100 -> 1e-4 / 0.0099507 = 0.0100496; mean 0.0050500
    # -> 0.34002, 0.66998, 1.99001
    assert suggest_class_weights(COUNTS)["effective_number"] == pytest.approx([0.34002, 0.66998, 1.99001, 0.0],
                                                                              abs=1e-4)


def test_weights_are_capped():
    # 1/f for 999000 / 1000 pixels: 1.001, 1000 -> mean 500.5 -> 0.002, 1.998; median: 0.5/0.001 = 500 -> cap 10
    weights = suggest_class_weights([999000, 1000])
    assert weights["median_frequency"][1] == 10.0
    assert max(max(w) for w in weights.values()) <= 10.0
