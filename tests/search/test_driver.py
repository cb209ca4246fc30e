"""The driver's plumbing (searcher, ASHA -> Optuna hand-off, MLflow callback, leaderboard) run with a dummy
trainable on the session's local Ray, in seconds; its Ray start: an unreachable cluster leaves nothing behind, a
local Ray listens on 127.0.0.1 only."""

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import yaml
import pytest
import ray

import search
import search.report
from fakes import BROKEN_ENCODER, dummy_trainable
from mlflow_runs import assert_logged_like
from search import load_config
from search.run import SMOKE_TEST
from search.run import main as search_main
from searches import search_watching_tpe, smoke_space_with_a_broken_trial
from segtune import names
from spaces import SPACES

FREE_PORT_TIMEOUT_S = 3
DUMMY_STARTUP = 3


@pytest.fixture(scope="module")
def dummy_search(local_ray, tmp_path_factory):
    """8 trials of up to 4 epochs, one at a time (so ASHA's decisions do not depend on timing); trial 1 fails."""
    folder = tmp_path_factory.mktemp("dummy_search")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(SPACES, "smoke_broken", smoke_space_with_a_broken_trial)
        # the dummy's checkpoints hold no model to draw predictions with (the real search's test draws them)
        patch.setattr(search.report, "plot_predictions", lambda *args: None)
        cfg = load_config(None, {**SMOKE_TEST, "space": "smoke_broken", "num_samples": 8, "max_epochs": 4,
                                 "grace_period": 1, "n_startup_trials": DUMMY_STARTUP, "max_concurrent_trials": 1,
                                 "name": "dummy", "storage_path": str(folder),
                                 "tracking_uri": f"sqlite:///{folder}/mlflow.db"})
        outcome, proposed_by_tpe = search_watching_tpe(cfg, trainable=dummy_trainable())
    return cfg, outcome, proposed_by_tpe


def test_the_driver_runs_every_trial_and_ranks_them_best_first(dummy_search):
    cfg, outcome, _ = dummy_search
    rows = outcome.leaderboard
    assert len(rows) == cfg.num_samples
    failed = [r for r in rows if r.outcome == "failed"]
    assert len(failed) == 1 and f"encoder {BROKEN_ENCODER} not found" in failed[0].error and rows[-1] in failed
    scores = [r.val_miou for r in rows[:-1]]
    assert scores == sorted(scores, reverse=True)
    best_epoch = json.loads((Path(outcome.best.checkpoint) / "epoch.json").read_text())["epoch"]
    assert best_epoch == outcome.best.epochs  # the dummy's scores rise: its best checkpoint is its last epoch
    assert outcome.paths.config.is_file() and outcome.paths.splits.is_file()
    assert outcome.paths.leaderboard.read_text().count("\n") == 1 + cfg.num_samples


def test_tpe_proposes_after_its_startup_trials(dummy_search):
    cfg, outcome, proposed_by_tpe = dummy_search
    assert proposed_by_tpe and min(proposed_by_tpe) >= DUMMY_STARTUP
    assert cfg.num_samples - 1 in proposed_by_tpe
    assert len(outcome.searcher.study.trials) == cfg.num_samples


def test_asha_stopped_trials_reach_optuna_as_pruned_with_their_last_score(dummy_search):
    cfg, outcome, _ = dummy_search
    by_lr = {trial.params["lr"]: trial for trial in outcome.searcher.study.trials}
    states = {"stopped_early": optuna.trial.TrialState.PRUNED, "completed": optuna.trial.TrialState.COMPLETE,
              "failed": optuna.trial.TrialState.FAIL}
    assert {"stopped_early", "completed"} <= {r.outcome for r in outcome.leaderboard}
    for row in outcome.leaderboard:
        trial = by_lr[row.params["lr"]]
        assert trial.state == states[row.outcome], row
        if row.outcome == "stopped_early":  # its last epoch's score, below max_epochs
            assert row.epochs < cfg.max_epochs and max(trial.intermediate_values) == row.epochs
            assert trial.intermediate_values[row.epochs] == pytest.approx(row.val_miou)
        if row.outcome == "completed":
            assert row.epochs == cfg.max_epochs and trial.value == pytest.approx(row.val_miou)


def test_mlflow_holds_the_parent_and_one_closed_child_per_trial_with_its_outcome(dummy_search):
    cfg, outcome, _ = dummy_search
    client, parents, by_trial = assert_logged_like(cfg.tracking_uri, outcome.leaderboard)
    assert parents[0].info.run_id == outcome.parent_run_id and parents[0].info.status == "FINISHED"
    for row in outcome.leaderboard:
        run = by_trial[row.trial_id]
        assert run.info.status == {"completed": "FINISHED", "stopped_early": "KILLED", "failed": "FAILED"}[row.outcome]
        assert (BROKEN_ENCODER in run.data.tags.get(names.TAG_ERROR, "")) == (row.outcome == "failed")
    artifacts = {a.path for a in client.list_artifacts(outcome.parent_run_id)}
    assert {"search_config.yaml", "splits.json", "leaderboard.csv", "plots"} <= artifacts


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("address, says", [
    ("not a host", "Invalid address format"),
    (f"127.0.0.1:{free_port()}", f"within {FREE_PORT_TIMEOUT_S} s"),  # nothing listens: Ray alone retries for minutes
])
def test_an_unreachable_ray_address_is_refused_in_bounded_time_and_writes_nothing(address, says, tmp_path, monkeypatch,
                                                                                  capsys):
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as from the command line: no Ray in this process yet
    monkeypatch.setenv("SEGTUNE_RAY_CONNECT_TIMEOUT_S", str(FREE_PORT_TIMEOUT_S))
    monkeypatch.chdir(tmp_path)
    args = ["--smoke-test", "--name", "x", "--storage-path", str(tmp_path / "results"),
            "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--ray-address", address]
    for _ in range(2):  # the same command, run again, meets no half-made experiment
        started = time.monotonic()
        assert search_main(args) == 2
        assert time.monotonic() - started < FREE_PORT_TIMEOUT_S + 20
        error = capsys.readouterr().err
        assert says in error and "--ray-address / ray_address" in error and "Nothing was written" in error
        assert sorted(p.name for p in tmp_path.iterdir()) == []  # no experiment folder, no mlflow.db, no run


LISTENING = """
import ray
import psutil  # Ray ships it (ray/thirdparty_files, on sys.path once ray is imported)
from search.config import load_config
from search.cluster import start_ray as _start_ray
_start_ray(load_config(None))
me = psutil.Process()
print(sorted({n["NodeManagerAddress"] for n in ray.nodes()}))
print(sorted({c.laddr.ip for p in [me, *me.children(recursive=True)] for c in p.net_connections("inet")
              if c.status == psutil.CONN_LISTEN}))
"""


@pytest.mark.slow  # starts a Ray of its own in a second process
def test_a_local_search_listens_on_127_0_0_1_only():
    done = subprocess.run([sys.executable, "-c", LISTENING], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    nodes, listening = done.stdout.strip().splitlines()[-2:]
    assert nodes == "['127.0.0.1']"
    assert listening and all(ip in ("127.0.0.1", "::ffff:127.0.0.1") for ip in eval(listening)), listening


def dummy_config(folder, **options):
    return load_config(None, {**SMOKE_TEST, "space": "smoke", "max_epochs": 3, "grace_period": 1,
                              "max_concurrent_trials": 1, "storage_path": str(folder),
                              "tracking_uri": f"sqlite:///{folder}/mlflow.db", **options})


def test_random_fifo_proposes_without_tpe_stops_no_trial_and_saves_and_logs_the_choice(local_ray, tmp_path, monkeypatch):
    import mlflow
    monkeypatch.setattr(search.report, "plot_predictions", lambda *args: None)
    cfg = dummy_config(tmp_path, name="random_fifo", sampler="random", scheduler="fifo", num_samples=5,
                       n_startup_trials=1)
    outcome, proposed_by_tpe = search_watching_tpe(cfg, trainable=dummy_trainable())
    assert proposed_by_tpe == [] and isinstance(outcome.searcher.study.sampler, optuna.samplers.RandomSampler)
    # the dummy's low-lr trials score far below the best at every epoch: ASHA would have stopped some
    assert [(r.outcome, r.epochs) for r in outcome.leaderboard] == [("completed", cfg.max_epochs)] * cfg.num_samples
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in outcome.searcher.study.trials)
    saved = yaml.safe_load(outcome.paths.config.read_text())
    assert (saved["sampler"], saved["scheduler"]) == ("random", "fifo")
    params = mlflow.MlflowClient(cfg.tracking_uri).get_run(outcome.parent_run_id).data.params
    assert (params["sampler"], params["scheduler"], params["tpe_group"]) == ("random", "fifo", "True")


def test_an_epoch_budget_ends_the_search_once_its_trials_ran_that_many_epochs(local_ray, tmp_path, monkeypatch, capsys):
    from search.budget import read_epoch_log
    monkeypatch.setattr(search.report, "plot_predictions", lambda *args: None)
    cfg = dummy_config(tmp_path, name="budget", scheduler="fifo", num_samples=50, epoch_budget=7, val_fraction=0.05)
    outcome = search.run_search(cfg, trainable=dummy_trainable())
    log = read_epoch_log(outcome.paths.epochs)
    # 3-epoch trials one at a time: trials 1 and 2 run 3 epochs each, the third is stopped after its first
    assert len(log) == cfg.epoch_budget
    assert [row[names.EPOCH] for row in log] == [1, 2, 3, 1, 2, 3, 1]
    assert sum(r.epochs for r in outcome.leaderboard) == cfg.epoch_budget and len(outcome.leaderboard) == 3
    assert [r.outcome for r in outcome.leaderboard].count("completed") == 2
    import mlflow
    assert mlflow.MlflowClient(cfg.tracking_uri).get_run(outcome.parent_run_id).info.status == "FINISHED"
    out = capsys.readouterr().out
    assert "search interrupted" not in out
    assert "note: the validation split holds 2 image(s)" in out     # 5 % of 48 synthetic images: said at the start


def test_gp_with_hyperband_runs_a_search_and_gp_proposes_after_its_startup_trials(local_ray, tmp_path, monkeypatch):
    proposed_by_gp = []
    original = optuna.samplers.GPSampler._sample_relative_impl

    def spy(self, study, completed_trials, running_trials, search_space):
        proposed_by_gp.append(len(completed_trials))
        return original(self, study, completed_trials, running_trials, search_space)

    monkeypatch.setattr(optuna.samplers.GPSampler, "_sample_relative_impl", spy)
    monkeypatch.setattr(search.report, "plot_predictions", lambda *args: None)
    # GP proposes only once 2 trials COMPLETE (pruned ones do not count); which trials complete depends on the
    # brackets Ray draws, now seeded by cfg.seed: seed 0 pruned all but one (3 of 3 runs), seed 1 completes enough
    cfg = dummy_config(tmp_path, name="gp_hyperband", sampler="gp", scheduler="hyperband", hyperband_brackets=2,
                       max_epochs=4, num_samples=6, n_startup_trials=2, seed=1)
    outcome = search.run_search(cfg, trainable=dummy_trainable())
    assert isinstance(outcome.searcher.study.sampler, optuna.samplers.GPSampler)
    assert proposed_by_gp and min(proposed_by_gp) >= cfg.n_startup_trials  # GP models only completed trials
    assert len(outcome.leaderboard) == cfg.num_samples and all(r.outcome != "failed" for r in outcome.leaderboard)
    states = {"stopped_early": optuna.trial.TrialState.PRUNED, "completed": optuna.trial.TrialState.COMPLETE}
    by_lr = {trial.params["lr"]: trial.state for trial in outcome.searcher.study.trials}
    assert all(by_lr[r.params["lr"]] == states[r.outcome] for r in outcome.leaderboard)
