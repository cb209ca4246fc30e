"""The report's table: every candidate's test mIoU and gain over the best single model with 95 % intervals,
in report.json, report.csv and the console, and the candidate cross-validation chose with its interval."""

import csv
import json

import numpy as np
import pytest
from test_bootstrap import A, B, C1, C2

from ensembles.bootstrap import bootstrap_intervals
from ensembles.combine import WeightedMean
from ensembles.fit import Fitted
from ensembles.protocol import Evaluation
from ensembles.report import chosen_summary, format_table, write_table
from segtune.paths import EnsemblePaths


@pytest.fixture
def rows():
    """best_single scores A, B on the two test images, mean C1, C2 (test_bootstrap's hand-worked numbers);
    "noisy" is perfect on image 1 (+0.225) and wrong on every pixel of image 2 (-0.25); on both, [[2, 2], [2, 2]]
    scores IoU 2/6 for each class against A + B's 0.598214: -0.264881."""
    perfect, wrong = np.array([[2, 0], [0, 2]]), np.array([[0, 2], [2, 0]])
    test = {"best_single": np.stack([A, B]), "mean": np.stack([C1, C2]), "noisy": np.stack([perfect, wrong])}
    fitted = {"best_single": Fitted(["t1"], WeightedMean([1.0]), [1.0]),
              "mean": Fitted(["t1", "t2"], WeightedMean([1.0, 1.0]), [1.0, 1.0]),
              "noisy": Fitted(["t1", "t2"], WeightedMean([1.0, 2.0]), [1.0, 2.0])}
    cv = {name: np.array([[4, 1], [1, 4]]) for name in test}  # IoU 4/6 each: cv mIoU 0.6667
    evaluation = Evaluation(cv, test, fitted, "mean", [["v1"], ["v2"]])
    return evaluation.table((), ["background", "plant"], bootstrap_intervals(test, "best_single", seed=0))


def test_rows_carry_intervals_and_say_whether_a_gain_can_be_told_from_zero(rows):
    best, mean, noisy = rows
    assert (mean["test_miou"], mean["test_miou_low"], mean["test_miou_high"]) == pytest.approx((0.845238, 0.583333, 1.0), abs=1e-6)
    assert (mean["gain"], mean["gain_low"], mean["gain_high"]) == pytest.approx((0.247024, 0.225, 0.333333), abs=1e-6)
    assert mean["gain_verdict"] == "above zero" and mean["chosen"] and mean["members"] == "t1 x1 t2 x1"
    assert (noisy["gain"], noisy["gain_low"], noisy["gain_high"]) == pytest.approx((-0.264881, -0.264881, 0.225), abs=1e-6)
    assert noisy["gain_verdict"] == "cannot be told from zero"
    assert best["gain_verdict"] == "" and best["gain"] == 0.0  # the baseline itself


def test_json_csv_and_console_hold_the_intervals(rows, tmp_path):
    folder = EnsemblePaths(tmp_path / "ensemble")
    write_table(rows, folder, {"chosen": "mean"})
    report = json.loads(folder.report.read_text())
    assert report["candidates"][1]["gain_low"] == pytest.approx(0.225)
    with folder.table.open() as handle:
        table = list(csv.DictReader(handle))
    for column in ("test_miou_low", "test_miou_high", "gain", "gain_low", "gain_high", "gain_verdict", "members"):
        assert column in table[0], column
    assert table[1]["test_miou_low"] == "0.5833" and table[2]["gain_verdict"] == "cannot be told from zero"
    console = format_table(rows)
    assert "mean               0.6667    0.8452 [0.583, 1.000]  +0.2470 [+0.225, +0.333] above zero  <- chosen" in console
    assert "cannot be told from zero" in console.splitlines()[3] and "baseline" in console.splitlines()[1]
    summary = chosen_summary(rows)
    assert summary.startswith("chosen by cross-validation: mean")
    assert "test mIoU 0.8452, 95 % interval [0.5833, 1.0000]" in summary
    assert "gain over the best single model +0.2470, 95 % interval [+0.2250, +0.3333]: above zero" in summary
