"""What a finished search leaves behind: leaderboard rows, a CSV, and pictures for the parent run."""

from __future__ import annotations

import csv
import io
import json
import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pyarrow.fs as pafs
import torch

from segtune import names, storage
from segtune.data import SegmentationData
from segtune.paths import ExperimentPaths
from segtune.plots import image_and_truth, picture_grid, plt, save_figure
from trainables import load_model, reference_logits

OUTCOME_COLOURS = {"completed": "tab:blue", "early_stopping": "tab:green", "stopped_early": "tab:orange",
                   "failed": "tab:red"}


@dataclass(frozen=True)
class LeaderboardRow:
    """One trial of a finished search, as the leaderboard (CSV, printed table, ensembles) shows it."""
    trial_id: str
    """Ray's trial id."""
    outcome: str
    """completed | stopped_early (by ASHA) | early_stopping (own patience) | failed (names.outcome_of)."""
    epochs: int
    """Epochs the trial reported."""
    val_miou: float
    """Its best validation mIoU, that of the model in `checkpoint` (scored_checkpoint); nan when it reported none."""
    params: dict
    """Its sampled parameters (Ray's trial config)."""
    checkpoint: str | None
    """Folder (local or s3://) of the checkpoint of its best epoch (scored_checkpoint); None when it kept none."""
    error: str
    """The last line of a failed trial's error; empty otherwise."""


def leaderboard_rows(results, max_epochs: int) -> list[LeaderboardRow]:
    """One row per trial, best validation mIoU first; failed trials last. A row's val mIoU is the score of the
    model its checkpoint holds (scored_checkpoint)."""
    rows = []
    for result in results:
        frame = result.metrics_dataframe
        has_scores = frame is not None and names.VAL_MIOU in frame
        epochs = int(frame[names.EPOCH].max()) if has_scores else 0
        early = has_scores and names.EARLY_STOPPED in frame and bool(frame[names.EARLY_STOPPED].fillna(0).max())
        outcome = names.outcome_of(epochs, max_epochs, early, failed=bool(result.error))
        val_miou, checkpoint = scored_checkpoint(result) if has_scores else (float("nan"), None)
        rows.append(LeaderboardRow(
            trial_id=(result.metrics or {}).get("trial_id") or Path(result.path).name,
            outcome=outcome,
            epochs=epochs,
            val_miou=val_miou,
            params=dict(result.config or {}),
            checkpoint=checkpoint,
            error=str(result.error).strip().splitlines()[-1] if result.error else "",
        ))
    return sorted(rows, key=lambda r: (r.outcome == "failed", -np.nan_to_num(r.val_miou, nan=-1)))


def scored_checkpoint(result) -> tuple[float, str | None]:
    """A trial's val mIoU and the folder (local, or s3://) of the checkpoint whose model scored it: the one place
    that picks a trial's best checkpoint.

    The score is the trial's best epoch's and the folder that epoch's checkpoint: Ray's best registered checkpoint,
    or, where Ray stopped the trial before registering its last reports (a search ended by epoch_budget or
    time_budget_s), the unregistered checkpoint_* folder of the trial whose checkpoint.pt holds the best epoch
    (read through the trial's own pyarrow filesystem, so in a bucket too). When the best epoch's checkpoint exists
    nowhere, the score becomes that of the best registered checkpoint, so that the score, the ranking and every
    pick made from it describe the model that will be used. A trial that kept no checkpoint at all keeps its best
    score, with None.
    """
    frame = result.metrics_dataframe.dropna(subset=[names.VAL_MIOU])
    if frame.empty:
        return float("nan"), None
    best = frame.loc[frame[names.VAL_MIOU].idxmax()]
    best_val, best_epoch = float(best[names.VAL_MIOU]), int(best[names.EPOCH])
    registered = _best_registered(result)
    if registered is not None and _same_score(registered[1][names.VAL_MIOU], best_val):
        return best_val, storage.checkpoint_location(registered[0])
    hint = best.get("checkpoint_dir_name")
    found = _unregistered_checkpoint(result, best_epoch, best_val, hint if isinstance(hint, str) else None)
    if found is not None:
        return best_val, storage.location(result.filesystem, found)
    if registered is not None:
        return float(registered[1][names.VAL_MIOU]), storage.checkpoint_location(registered[0])
    return best_val, None


def _best_registered(result):
    """(checkpoint, its metrics) of the best checkpoint Ray registered for the trial; None when it registered none."""
    scored = [(c, m) for c, m in (result.best_checkpoints or []) if m.get(names.VAL_MIOU) is not None]
    return max(scored, key=lambda kept: kept[1][names.VAL_MIOU], default=None)


def _same_score(stored: float, best_val: float) -> bool:
    # progress.csv (the metrics frame) and Ray's checkpoint metrics write the same float through different formats
    return math.isclose(stored, best_val, rel_tol=1e-9, abs_tol=1e-12)


def _unregistered_checkpoint(result, epoch: int, val_miou: float, hint: str | None) -> str | None:
    """The path of the trial's checkpoint folder Ray did not register whose checkpoint.pt holds `epoch` scoring
    `val_miou`; the folder its progress names for that epoch (`hint`) is read first. None when there is none."""
    fs, kept = result.filesystem, {c.path for c, _ in (result.best_checkpoints or [])}
    try:
        infos = fs.get_file_info(pafs.FileSelector(result.path, allow_not_found=True))
    except OSError:  # the trial folder cannot be listed (a bucket that does not answer): only Ray's checkpoints
        return None
    folders = sorted((i.path for i in infos if i.type == pafs.FileType.Directory
                      and i.base_name.startswith("checkpoint_") and i.path not in kept), reverse=True)
    folders.sort(key=lambda path: Path(path).name != hint)  # the named folder, then the newest first
    for folder in folders:
        held = _stored_score(fs, f"{folder}/{names.CHECKPOINT_FILE}")
        if held is not None and held[0] == epoch and _same_score(held[1], val_miou):
            return folder
    return None


def _stored_score(fs, path: str) -> tuple[int, float] | None:
    """(epoch, its val mIoU) a checkpoint.pt holds; None when it is missing or unreadable (an upload cut short).
    A local file is memory-mapped, so its tensors are not read; a remote one is read whole (one download for each
    trial whose best epoch Ray left unregistered, the folder its progress names being read first)."""
    try:
        if isinstance(fs, pafs.LocalFileSystem):
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        else:
            with fs.open_input_file(path) as handle:
                state = torch.load(io.BytesIO(handle.read()), map_location="cpu", weights_only=True)
        return int(state["epoch"]), float(state["history"][-1])
    except (OSError, RuntimeError, EOFError, KeyError, IndexError, TypeError, ValueError, pickle.UnpicklingError):
        return None


def write_reports(paths: ExperimentPaths, rows, results, searcher, data: SegmentationData, splits, tracker) -> None:
    write_leaderboard(paths.leaderboard, rows)
    plots = [plot_history(rows, paths.plot("optimisation_history"))]
    if searcher is not None:
        plots.append(plot_importances(searcher.study, paths.plot("parameter_importances")))
    best = next((r for r in rows if r.checkpoint), None)
    if best:
        plots.append(plot_predictions(storage.local_checkpoint(best.checkpoint, paths), data, splits["val"][:4],
                                      paths.plot("best_trial_predictions")))
    for file in [paths.config, paths.splits, paths.leaderboard]:
        tracker.log_artifact(str(file))
    for plot in plots:
        if plot is not None:
            tracker.log_artifact(str(plot), "plots")
    tracker.log_summary(summary_metrics(rows))


def summary_metrics(rows: list[LeaderboardRow]) -> dict:
    """The parent run's metrics: best val mIoU and how the trials ended."""
    finished = [r for r in rows if r.outcome != "failed"]
    return {names.BEST_VAL_MIOU: max((r.val_miou for r in finished), default=0.0),
            "trials_completed": sum(r.outcome == "completed" for r in rows),
            "trials_stopped_early": sum(r.outcome == "stopped_early" for r in rows),
            "trials_failed": sum(r.outcome == "failed" for r in rows)}


def write_leaderboard(path: Path, rows) -> None:
    """leaderboard.csv: one row per trial in rank order (the driver writes it; bench/rescore_picks.py rewrites it)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "trial_id", "outcome", "epochs", names.VAL_MIOU, "checkpoint", "params", "error"])
        for rank, row in enumerate(rows, 1):
            writer.writerow([rank, row.trial_id, row.outcome, row.epochs, f"{row.val_miou:.5f}",
                             row.checkpoint or "", json.dumps(row.params), row.error])


def plot_history(rows, path: Path) -> Path:
    ordered = sorted(rows, key=lambda r: r.trial_id)
    figure, axis = plt.subplots(figsize=(7, 4))
    best_so_far = np.fmax.accumulate([np.nan_to_num(r.val_miou) for r in ordered]) if ordered else []
    for number, row in enumerate(ordered):
        axis.scatter(number, np.nan_to_num(row.val_miou), color=OUTCOME_COLOURS[row.outcome], s=30)
    axis.step(range(len(ordered)), best_so_far, where="post", color="black", label="best so far")
    for outcome, colour in OUTCOME_COLOURS.items():
        axis.scatter([], [], color=colour, label=outcome.replace("_", " "))
    axis.set(xlabel="trial (in order started)", ylabel="best val mIoU", title="Optimisation history")
    axis.legend(loc="lower right", fontsize=8)
    return save_figure(figure, path)


def plot_importances(study: optuna.Study, path: Path) -> Path | None:
    """fANOVA importances over finished and ASHA-stopped trials (the latter at their last score)."""
    scored = []
    for trial in study.trials:
        value = trial.value if trial.state == optuna.trial.TrialState.COMPLETE else (
            trial.intermediate_values[max(trial.intermediate_values)] if trial.intermediate_values else None)
        if value is not None and trial.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED):
            scored.append(optuna.trial.create_trial(params=trial.params, distributions=trial.distributions, value=value))
    if len(scored) < 2:
        return None
    copy = optuna.create_study(direction="maximize")
    copy.add_trials(scored)
    try:
        importances = optuna.importance.get_param_importances(copy, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (RuntimeError, ValueError):
        return None
    figure, axis = plt.subplots(figsize=(7, 0.4 * len(importances) + 1.2))
    keys = list(importances)[::-1]
    axis.barh(keys, [importances[k] for k in keys], color="tab:blue")
    axis.set(xlabel="importance for val mIoU (fANOVA)", title="Parameter importances")
    return save_figure(figure, path)


@torch.no_grad()
def plot_predictions(checkpoint_file: Path, data: SegmentationData, ids: list[str], path: Path) -> Path:
    """Image, ground truth and the best trial's prediction side by side, for a few validation images."""
    model, cfg = load_model(checkpoint_file)
    palette = np.array(data.palette, dtype=np.uint8)
    index = data.index_of()
    rows = []
    for image_id in ids:
        image = data.images[index[image_id]]
        prediction = reference_logits(model, image, cfg).argmax(1)[0].numpy()  # at the trial's scale
        rows.append(image_and_truth(data, image_id) + [(palette[prediction], "prediction")])
    return picture_grid(rows, path)
