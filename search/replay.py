"""Log a search to MLflow from its experiment folder, after the fact.

    segtune mlflow EXPERIMENT_DIR                         # into the search's own tracking store
    segtune mlflow EXPERIMENT_DIR --tracking-uri http://mlflow-host:5000

For a search that ran while its store was unreachable (it says so and carries on), or to copy a
search into another store. The experiment folder holds everything: the config, splits, every
trial's parameters and per-epoch results (Ray's results API), the leaderboard and the plots. The
runs are the same as live logging writes: one parent, a child per trial with its outcome.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from search.experiment import load_experiment_data, load_results, open_experiment
from search.fixed import fixed_trial_params
from search.report import leaderboard_rows, summary_metrics
from segtune import names, storage
from segtune.cli import set_quiet_defaults
from segtune.paths import ExperimentPaths
from segtune.tracking import Tracker


def replay(paths: ExperimentPaths, tracking_uri: str | None = None, force: bool = False) -> str:
    """Log the experiment as a new parent run with its children; returns the parent run id."""
    cfg, data, splits = load_experiment_data(paths)
    tracker = Tracker(tracking_uri or cfg.tracking_uri, cfg.mlflow_experiment)
    uri = tracker.tracking_uri  # a password masked
    if not force and paths.parent_run.exists() and _run_exists(tracker, paths.parent_run.read_text().strip()):
        raise FileExistsError(f"{paths.tune_path} is already logged in {uri} as run {paths.parent_run.read_text().strip()}; "
                              "pass --force to log it again as a new run")
    fixed = fixed_trial_params(cfg, data, splits).as_dict()
    parent = tracker.start_parent(cfg.name, cfg.to_dict())
    results = load_results(paths)
    rows = {row.trial_id: row for row in leaderboard_rows(results, cfg.max_epochs)}
    for result in results:
        trial_id = (result.metrics or {}).get("trial_id") or Path(result.path).name
        params = {**fixed, **(result.config or {})}
        tracker.child(trial_id, params)
        frame = result.metrics_dataframe
        if frame is not None and names.EPOCH in frame:
            for record in frame.to_dict("records"):
                tracker.log_epoch(trial_id, params, record)
        error = _error_text(result) or rows[trial_id].error
        tracker.close_child(trial_id, params, rows[trial_id].outcome, error or None)
    for file in [paths.config, paths.splits, paths.leaderboard, paths.exclusions]:
        if file.exists():
            tracker.log_artifact(str(file))
    for plot in sorted((paths.segtune / "plots").glob("*.png")):
        tracker.log_artifact(str(plot), "plots")
    tracker.log_summary(summary_metrics(list(rows.values())))
    tracker.finish_parent("FINISHED")
    if tracker.failed or parent is None:
        raise ConnectionError(f"logging to {uri} failed (see the warning above); nothing was marked as logged")
    paths.parent_run.write_text(parent)
    storage.push(paths)
    return parent


def _error_text(result) -> str | None:
    """The trial's full error.txt (local or in the bucket), when Ray wrote one."""
    try:
        with result.filesystem.open_input_stream(f"{result.path}/error.txt") as stream:
            return stream.read().decode(errors="replace")
    except (FileNotFoundError, OSError):
        return None


def _run_exists(tracker: Tracker, run_id: str) -> bool:
    try:
        tracker.client.get_run(run_id)
        return True
    except Exception:  # noqa: BLE001 - any lookup failure means the run is not there to reuse
        return False


def main(argv: list[str] | None = None) -> int:
    set_quiet_defaults()
    parser = argparse.ArgumentParser(prog="segtune mlflow", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="experiment folder (or s3:// URI) of a search")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default: the search's own)")
    parser.add_argument("--force", action="store_true", help="log again even if the search is already in the store")
    args = parser.parse_args(argv)
    try:
        parent = replay(open_experiment(args.experiment), args.tracking_uri, args.force)
    except (ValueError, FileNotFoundError, FileExistsError, ConnectionError) as error:
        raise SystemExit(f"segtune mlflow: {error}") from None
    print(f"logged {args.experiment} as MLflow run {parent}")
    return 0


if __name__ == "__main__":
    from segtune.cli import run_command  # exit 2 for a refusal, as `segtune ...`
    raise SystemExit(run_command(main))
