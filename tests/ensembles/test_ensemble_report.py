"""The report's table: every candidate's test mIoU and gain over the best single model with 95 % intervals,
in report.json, report.csv and the console, and the candidate cross-validation chose with its interval."""

import csv
import json

import numpy as np
import pytest
from test_bootstrap import A, B, C1, C2, OTHER, OWN_CLASS, RARE

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
    assert "interval_note" not in table[0] and "interval_note" not in report["candidates"][0]  # nothing discarded
    console = format_table(rows)
    assert len(console.splitlines()) == 4 and "bootstrap:" not in console
    assert "mean               0.6667    0.8452 [0.583, 1.000]  +0.2470 [+0.225, +0.333] above zero  <- chosen" in console
    assert "cannot be told from zero" in console.splitlines()[3] and "baseline" in console.splitlines()[1]
    summary = chosen_summary(rows)
    assert summary.startswith("chosen by cross-validation: mean")
    assert "test mIoU 0.8452, 95 % interval [0.5833, 1.0000]" in summary
    assert "gain over the best single model +0.2470, 95 % interval [+0.2250, +0.3333]: above zero" in summary


def _table(test: dict, exclude: tuple, class_names: list[str], resamples: int) -> list[dict]:
    """The table of best_single and mean scored on `test`, both cross-validated perfectly (cv mIoU 1.0)."""
    fitted = {"best_single": Fitted(["t1"], WeightedMean([1.0]), [1.0]),
              "mean": Fitted(["t1", "t2"], WeightedMean([1.0, 1.0]), [1.0, 1.0])}
    cv = {name: np.diag([2] * len(class_names)) for name in test}
    evaluation = Evaluation(cv, test, fitted, "mean", [["v1"], ["v2"]])
    return evaluation.table(exclude, class_names, bootstrap_intervals(test, "best_single", exclude, resamples))


def test_discarded_resamples_are_stated_in_json_csv_and_console(tmp_path):
    # test_bootstrap's RARE and OTHER: the rare class is labelled in the third of 3 images only
    test = {"best_single": RARE, "mean": OTHER}
    rows = _table(test, (0,), ["background", "common", "rare"], 1000)
    draws = bootstrap_intervals(test, "best_single", (0,))["mean"].draws
    note = f"{draws.discarded} resamples missing a scored class discarded"
    assert draws.discarded > 0 and [r["interval_note"] for r in rows] == [note, note]
    assert (rows[0]["test_miou"], rows[0]["test_miou_low"], rows[0]["test_miou_high"]) == pytest.approx(
        (19 / 42, 1 / 3, 11 / 21))
    assert (rows[1]["test_miou"], rows[1]["gain"]) == pytest.approx((19 / 56, -19 / 168))
    folder = EnsemblePaths(tmp_path / "ensemble")
    write_table(rows, folder, {"chosen": "mean"})
    assert json.loads(folder.report.read_text())["candidates"][1]["interval_note"] == note
    with folder.table.open() as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0])[-1] == "interval_note" and table[1]["interval_note"] == note  # a last column, only now
    assert table[0]["test_miou_high"] == "0.5238" and table[1]["gain"] == "-0.1131"
    console = format_table(rows).splitlines()
    assert len(console) == 4 and "    0.4524 [0.333, 0.524] baseline" in console[1]
    assert console[-1] == f"bootstrap: {note}"


def test_too_few_valid_resamples_show_nan_intervals_and_the_reason(tmp_path):
    # test_bootstrap's OWN_CLASS[6]: each of 6 images holds a class of its own; 100 resamples asked, about 31 valid
    test = {"best_single": OWN_CLASS[6], "mean": OWN_CLASS[6]}
    rows = _table(test, (), [str(c) for c in range(6)], 100)
    reason = bootstrap_intervals(test, "best_single", resamples=100)["mean"].draws.reason
    assert reason.startswith("no interval: ") and rows[1]["interval_note"] == reason
    assert np.isnan(rows[1]["test_miou_low"]) and rows[1]["gain_verdict"] == "" and rows[1]["gain"] == 0.0
    console = format_table(rows).splitlines()
    assert console[2].startswith("mean               1.0000    1.0000 [nan, nan]  +0.0000 [+nan, +nan]")
    assert console[-1] == f"bootstrap: {reason}"
    folder = EnsemblePaths(tmp_path / "ensemble")
    write_table(rows, folder, {"chosen": "mean"})
    with folder.table.open() as handle:
        assert list(csv.DictReader(handle))[1]["test_miou_low"] == "nan"
