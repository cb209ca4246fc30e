"""Which trials join the ensemble, read through Ray's results API: the top k by validation mIoU, and the
library (every finished trial that kept its validation probabilities) that `--select library` chooses from."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from search.experiment import load_results, open_experiment
from search.report import leaderboard_rows
from segtune.names import VAL_PROBABILITIES_FILE
from segtune.paths import ExperimentPaths, is_remote
from segtune.storage import local_checkpoint
from segtune.tracking import hide_password, store_uri, without_secret

RUN_ID = re.compile(r"[0-9a-f]{32}")
"""What an MLflow run id looks like; anything else is taken for an experiment folder."""
SIMILAR_RATIO = 1.25
"""Numeric parameters within this factor of each other count as the same when skipping near-duplicates."""


@dataclass(frozen=True)
class Member:
    trial_id: str
    val_miou: float
    params: dict
    checkpoint: Path
    """The trial's best-epoch checkpoint file."""
    val_probabilities: Path | None = None
    """Its class probabilities on the validation images, kept by the trial beside that checkpoint; None if none."""
    epochs: int = 0
    """Epochs the trial trained (its last reported epoch), which a refit on folds trains for."""


def resolve_experiment(source: str, tracking_uri: str | None = None) -> ExperimentPaths:
    """An experiment folder, or the id of a search's MLflow parent run (its params name the folder).

    A mistyped folder never reaches MLflow: opening a sqlite store creates its file (./mlflow.db).
    """
    if is_remote(source) or Path(source).expanduser().exists() or tracking_uri is None:
        return open_experiment(source)
    shown = hide_password(tracking_uri)  # messages carry no password
    database = tracking_uri.removeprefix("sqlite:///") if tracking_uri.startswith("sqlite:///") else None
    if not RUN_ID.fullmatch(source) or (database is not None and not Path(database).is_file()):
        raise FileNotFoundError(f"{source} is neither an experiment folder (no such folder) nor the id of a run in "
                                f"{shown}; pass the folder `segtune search` printed or its parent run id")
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient
    try:
        params = MlflowClient(store_uri(shown)).get_run(source).data.params
    except MlflowException as error:
        raise FileNotFoundError(f"{source} is neither an experiment folder nor a run in {shown} "
                                f"({without_secret(str(error).splitlines()[0])})") from None
    if "storage_path" not in params or "name" not in params:
        raise ValueError(f"MLflow run {source} is not a segtune search's parent run (no storage_path/name params)")
    storage_path = params["storage_path"]
    return open_experiment(f"{storage_path.rstrip('/')}/{params['name']}" if is_remote(storage_path)
                           else Path(storage_path).expanduser().resolve() / params["name"])


def top_members(paths: ExperimentPaths, k: int, max_epochs: int, skip_similar: bool = True) -> list[Member]:
    """The k best trials with a checkpoint, best first; near-identical configs skipped unless asked."""
    if k < 1:
        raise ValueError(f"option top_k: {k}; an ensemble needs at least one member")
    chosen: list[Member] = []
    for row in _finished_rows(paths, max_epochs):
        if skip_similar and any(near_identical(row.params, member.params) for member in chosen):
            continue
        chosen.append(_member(row, paths))
        if len(chosen) == k:
            break
    return chosen


def library_members(paths: ExperimentPaths, max_epochs: int) -> list[Member]:
    """Every trial with a checkpoint that kept its validation probabilities, best first (near-duplicates too:
    selection decides whether a second copy helps)."""
    rows = _finished_rows(paths, max_epochs)
    library = [m for m in (_member(row, paths) for row in rows) if m.val_probabilities is not None]
    if not library:
        raise ValueError(f"option --select library: none of the {len(rows)} trials of {paths.root} kept its validation "
                         "probabilities (keep_val_probabilities: false, or a search from before segtune kept them); "
                         "use --select top-k")
    return library


def _finished_rows(paths: ExperimentPaths, max_epochs: int):
    rows = [r for r in leaderboard_rows(load_results(paths), max_epochs) if r.checkpoint and r.outcome != "failed"]
    if not rows:
        raise ValueError(f"{paths.root}: no trial has a checkpoint; did the search run any epoch?")
    return rows


def _member(row, paths: ExperimentPaths) -> Member:
    try:
        kept = local_checkpoint(row.checkpoint, paths, VAL_PROBABILITIES_FILE)
    except OSError:  # not in the bucket: the trial kept none
        kept = None
    return Member(row.trial_id, row.val_miou, row.params, local_checkpoint(row.checkpoint, paths),
                  kept if kept is not None and kept.is_file() else None, row.epochs)


def near_identical(a: dict, b: dict) -> bool:
    """Same choices everywhere, and every number within SIMILAR_RATIO (lr 1e-3 vs 1.1e-3 is the same)."""
    if a.keys() != b.keys():
        return False
    for key, x in a.items():
        y = b[key]
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
            if (x > 0) != (y > 0) or (x > 0 and abs(math.log(x / y)) > math.log(SIMILAR_RATIO)) or (x <= 0 and x != y):
                return False
        elif x != y:
            return False
    return True
