"""The ensemble's report: a table (JSON and CSV) and two pictures, in the experiment folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch

from ensembles.probabilities import ProbabilityStore
from ensembles.protocol import combined_probabilities
from segtune.data import SegmentationData
from segtune.paths import EnsemblePaths
from segtune.plots import image_and_truth, picture_grid, plt, save_figure

REFERENCE = "search_best"
"""A refit report's reference row: the search's best trial as the search trained it, scored on test beside the
candidates (its gain: the chosen candidate's test mIoU minus its own, paired); never chosen, never exported."""


def write_table(rows: list[dict], folder: EnsemblePaths, extra: dict) -> list[Path]:
    folder.root.mkdir(parents=True, exist_ok=True)
    json_file, csv_file = folder.report, folder.table
    json_file.write_text(json.dumps({**extra, "candidates": rows}, indent=1, default=float))
    with csv_file.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()} for row in rows)
    return [json_file, csv_file]


def format_table(rows: list[dict]) -> str:
    """The console table: cross-validated and test mIoU, the test mIoU's and the gain's 95 % intervals, and a
    line on the bootstrap's draws when some were discarded. A reference row has no cv mIoU ('-') and its gain is
    the chosen candidate's over it."""
    lines = [f"{'candidate':16s} {'cv mIoU':>8s} {'test mIoU':>9s} {'95% interval':^14s} {'gain':>8s} "
             f"{'95% interval':^16s} (gain over the best single model)"]
    for row in rows:
        has_gain = row["candidate"] != "best_single" and not np.isnan(row["gain"])  # NaN: no baseline
        gain = (f"{row['gain']:+8.4f} [{row['gain_low']:+.3f}, {row['gain_high']:+.3f}] {row['gain_verdict']}"
                if has_gain else f"{'baseline' if row['candidate'] == 'best_single' else '':>8s}")
        cv = "-" if row["cv_miou"] is None else f"{row['cv_miou']:.4f}"
        lines.append(f"{row['candidate']:16s} {cv:>8s} {row['test_miou']:9.4f} "
                     f"[{row['test_miou_low']:.3f}, {row['test_miou_high']:.3f}] {gain}"
                     + ("  <- chosen" if row["chosen"] else "")
                     + (f" (chosen minus {REFERENCE})" if row["candidate"] == REFERENCE and has_gain else ""))
    if rows and "interval_note" in rows[0]:
        lines.append(f"bootstrap: {rows[0]['interval_note']}")
    return "\n".join(lines)


def chosen_summary(rows: list[dict]) -> str:
    """One plain sentence on the candidate cross-validation chose, with its intervals."""
    row = next(r for r in rows if r["chosen"])
    text = (f"chosen by cross-validation: {row['candidate']} (cv mIoU {row['cv_miou']:.4f}; members {row['members']}); "
            f"test mIoU {row['test_miou']:.4f}, 95 % interval [{row['test_miou_low']:.4f}, {row['test_miou_high']:.4f}]")
    if row["gain_verdict"]:
        text += (f"; gain over the best single model {row['gain']:+.4f}, 95 % interval "
                 f"[{row['gain_low']:+.4f}, {row['gain_high']:+.4f}]: {row['gain_verdict']}")
    return text


def reference_line(rows: list[dict], experiment: str) -> str:
    """One plain sentence on the refit's chosen candidate against the REFERENCE row (the search's best trial as the
    search trained it), read from their paired gain's interval; `experiment`: the plain command's argument."""
    row, chosen = next(r for r in rows if r["candidate"] == REFERENCE), next(r for r in rows if r["chosen"])
    ours = f"the refit's chosen {chosen['candidate']} (test mIoU {chosen['test_miou']:.4f})"
    theirs = f"{REFERENCE}, the search's best trial {row['members']} as the search trained it ({row['test_miou']:.4f})"
    gain = f"gain {row['gain']:+.4f}, 95 % interval [{row['gain_low']:+.4f}, {row['gain_high']:+.4f}]"
    if not row["gain_low"] <= row["gain_high"]:  # NaN: the bootstrap gave no interval
        return f"{ours} and {theirs}, are not compared: the bootstrap gave no interval for the gain"
    if row["gain_high"] < 0:
        return (f"{ours} is below {theirs}: {gain}, entirely below zero; on this test split the plain `segtune "
                f"ensemble {experiment}` bundle (without --refit-folds) is the better export")
    if row["gain_low"] > 0:
        return (f"{ours} is above {theirs}: {gain}, entirely above zero; on this test split the refit's bundle is "
                "the better export")
    return f"{ours} and {theirs}, cannot be told apart on this test split: {gain} holds zero"


def plot_class_iou(rows: list[dict], class_names: list[str], path: Path) -> Path:
    """Per-class IoU of every candidate: cross-validated on validation (left) and on test (right)."""
    rows = [row for row in rows if row["candidate"] != REFERENCE]  # no cv scores: not fitted on the fitting images
    figure, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    width = 0.8 / len(rows)
    for axis, split in zip(axes, ("cv", "test")):
        for n, row in enumerate(rows):
            values = [np.nan_to_num(row[f"{split}_iou_{c}"]) for c in class_names]
            label = row["candidate"] + (" (chosen)" if row["chosen"] else "")
            axis.bar(np.arange(len(class_names)) + n * width, values, width, label=label)
        axis.set_xticks(np.arange(len(class_names)) + 0.4 - width / 2, class_names)
        axis.set(title=f"{'cross-validated (val)' if split == 'cv' else 'test'} IoU per class", ylim=(0, 1))
    axes[0].set_ylabel("IoU")
    axes[1].legend(fontsize=8, loc="upper right")
    return save_figure(figure, path)


@torch.no_grad()
def plot_test_predictions(fitted: dict, store: ProbabilityStore, data: SegmentationData, ids: list[str],
                          path: Path, folds: list[ProbabilityStore] = ()) -> Path:
    """A few test images: image, ground truth, then each candidate's prediction, as test scored it (`folds`: as for
    protocol.combined_probabilities)."""
    palette = np.array(data.palette, dtype=np.uint8)
    rows = []
    for image_id in ids:
        predictions = [(palette[combined_probabilities(f, store, image_id, folds).argmax(1)[0].numpy()], name)
                       for name, f in fitted.items()]
        rows.append(image_and_truth(data, image_id) + predictions)
    return picture_grid(rows, path)
