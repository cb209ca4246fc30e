"""The real trainable in a real (local) Ray Tune search, once, end to end."""

import json
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from drivers import kill_once_trials_finished, local_files, run_driver
from search.driver import load_searcher
from segtune import names
from segtune.paths import experiment_paths
from searches import N_STARTUP
from trainables import load_model

pytestmark = pytest.mark.slow


def test_tpe_proposed_the_configs_after_its_startup_trials(finished_search):
    cfg, outcome, proposed_by_tpe = finished_search
    assert proposed_by_tpe, "TPE never proposed a configuration: the search was random"
    assert min(proposed_by_tpe) >= N_STARTUP
    assert cfg.num_samples - 1 in proposed_by_tpe  # the last trial came from TPE
    assert outcome.searcher is not None and len(outcome.searcher.study.trials) == cfg.num_samples


def test_asha_stopped_some_trials_and_they_reach_optuna_as_pruned(finished_search):
    cfg, outcome, _ = finished_search
    stopped = [r for r in outcome.leaderboard if r.outcome == "stopped_early"]
    assert stopped and all(r.epochs < cfg.max_epochs for r in stopped)
    assert any(r.outcome == "completed" and r.epochs == cfg.max_epochs for r in outcome.leaderboard)
    states = [t.state for t in outcome.searcher.study.trials]
    assert states.count(optuna.trial.TrialState.PRUNED) == len(stopped)


def test_a_failing_trial_is_marked_failed_and_the_search_goes_on(finished_search):
    cfg, outcome, _ = finished_search
    failed = [r for r in outcome.leaderboard if r.outcome == "failed"]
    assert len(failed) == 1 and "no_such_encoder" in failed[0].error
    assert len(outcome.leaderboard) == cfg.num_samples


def test_best_checkpoint_loads_and_predicts(finished_search):
    _, outcome, _ = finished_search
    best = outcome.best
    assert best.val_miou == max(r.val_miou for r in outcome.leaderboard if r.outcome != "failed")
    model, trial_cfg = load_model(Path(best.checkpoint) / "checkpoint.pt")
    with torch.no_grad():
        logits = model(torch.zeros(2, trial_cfg.in_channels, 64, 64))
    assert logits.shape == (2, 4, 64, 64)


def test_mlflow_has_one_parent_and_a_closed_child_per_trial(finished_search):
    cfg, outcome, _ = finished_search
    client = MlflowClient(cfg.tracking_uri)
    experiment = client.get_experiment_by_name(cfg.mlflow_experiment).experiment_id
    runs = client.search_runs([experiment])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == outcome.parent_run_id
                and names.TAG_TRIAL_ID in r.data.tags]  # an ensemble built from this search adds a non-trial child
    assert [p.info.run_id for p in parents] == [outcome.parent_run_id]
    assert len(children) == cfg.num_samples
    assert not [r for r in runs if r.info.status == "RUNNING"]
    by_trial = {r.data.tags[names.TAG_TRIAL_ID]: r for r in children}
    for row in outcome.leaderboard:
        run = by_trial[row.trial_id]
        assert run.data.tags[names.TAG_OUTCOME] == row.outcome
        assert run.info.status == {"completed": "FINISHED", "stopped_early": "KILLED", "failed": "FAILED"}[row.outcome]
        history = client.get_metric_history(run.info.run_id, names.VAL_MIOU)
        assert [m.step for m in history] == list(range(1, row.epochs + 1))
    artifacts = {a.path for a in client.list_artifacts(outcome.parent_run_id)}
    assert {"search_config.yaml", "splits.json", "leaderboard.csv", "plots"} <= artifacts
    plots = {Path(a.path).name for a in client.list_artifacts(outcome.parent_run_id, "plots")}
    assert {"optimisation_history.png", "parameter_importances.png", "best_trial_predictions.png"} <= plots


def test_splits_and_config_are_saved_with_the_experiment(finished_search):
    _, outcome, _ = finished_search
    splits = json.loads(outcome.paths.splits.read_text())
    assert set(splits) == {"train", "val", "test"}
    assert not set(splits["train"]) & set(splits["val"] + splits["test"])
    saved = yaml.safe_load(outcome.paths.config.read_text())
    assert (saved["space"], saved["num_samples"], saved["name"]) == ("smoke_broken", 7, "e2e")


def test_killed_search_resumes_without_rerunning_finished_trials(tmp_path):
    args = ["--smoke-test", "--num-samples", "5", "--max-concurrent-trials", "1", "--name", "killed",
            "--storage-path", str(tmp_path), "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    experiment = tmp_path / "killed"
    output, statuses = kill_once_trials_finished(args, tmp_path, *local_files(experiment))
    finished_before = {f"trial_{trial}": (experiment / f"trial_{trial}" / "result.json").read_text()
                       for trial, status in statuses.items() if status == "TERMINATED"}
    assert 2 <= len(finished_before) < 5, output  # killed mid-search, with finished trials the resume must keep

    resumed = run_driver(["--resume", "--name", "killed", "--storage-path", str(tmp_path)], tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    rows = list(csv_rows(experiment / "segtune" / "leaderboard.csv"))
    assert len(rows) == 5 and all(r["outcome"] != "failed" for r in rows)
    for trial, results in finished_before.items():  # a trial that had finished was not trained again
        assert (experiment / trial / "result.json").read_text() == results
        row = next(r for r in rows if f"trial_{r['trial_id']}" == trial)
        assert int(row["epochs"]) == results.count("\n")
    searcher = load_searcher(experiment_paths(str(tmp_path), "killed"), max_epochs=2)
    assert len(searcher.study.trials) == 5  # the study from before the kill was restored, not restarted
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("segtune").experiment_id])
    assert not [r for r in runs if r.info.status == "RUNNING"]
    children = [r for r in runs if names.TAG_TRIAL_ID in r.data.tags]
    outcomes = {r["trial_id"]: r["outcome"] for r in rows}
    logged = {c.data.tags[names.TAG_TRIAL_ID]: (c.info.status, c.data.tags[names.TAG_OUTCOME]) for c in children}
    assert {trial: outcome for trial, (_, outcome) in logged.items() if trial in outcomes} == outcomes
    # a trial the killed driver had started after Ray's last experiment snapshot is dropped by the resume
    # (another takes its place); its run is closed as interrupted, never left RUNNING
    assert all(logged[trial] == ("KILLED", "interrupted") for trial in set(logged) - set(outcomes))


def csv_rows(path):
    import csv
    with open(path) as handle:
        yield from csv.DictReader(handle)
