"""A search's Optuna study in its experiment folder's database, run with the dummy trainable on the session's local
Ray: optuna-dashboard reads it while the search runs, it agrees with Ray's results, and --resume makes a study
that disagrees with Ray's saved state (a trial lost, one Ray never saved) agree again."""

import io
import json
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from optuna_dashboard import wsgi

import search.report
from fakes import dummy_trainable
from search import load_config, run_search
from search.progress import ProgressLine
from search.run import SMOKE_TEST
from search.searcher import RAY_TRIAL_ID
from search.study import open_storage, write_study
from searches import smoke_space_with_a_broken_trial
from spaces import SPACES

pytestmark = pytest.mark.slow
OUTCOME_STATES = {"completed": "COMPLETE", "stopped_early": "PRUNED", "failed": "FAIL"}


def dashboard(url: str, path: str) -> dict:
    """GET path from optuna-dashboard's app over the database at url (what `optuna-dashboard URL` serves)."""
    environ = {"PATH_INFO": path, "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    statuses = []
    body = b"".join(wsgi(url)(environ, lambda status, headers, *rest: statuses.append(status)))
    assert statuses == ["200 OK"], (path, statuses, body[:300])
    return json.loads(body)


def dashboard_trials(url: str, name: str) -> list[dict]:
    [study] = [s for s in dashboard(url, "/api/studies")["study_summaries"] if s["study_name"] == name]
    return dashboard(url, f"/api/studies/{study['study_id']}")["trials"]


def search_patches(patch):
    patch.setitem(SPACES, "smoke_broken", smoke_space_with_a_broken_trial)  # trial 1 fails
    patch.setattr(search.report, "plot_predictions", lambda *args: None)  # the dummy's checkpoints hold no model


@pytest.fixture(scope="module")
def studied_search(local_ray, tmp_path_factory):
    """6 trials of up to 3 epochs, one at a time, and what optuna-dashboard served at each reported epoch."""
    folder = tmp_path_factory.mktemp("studied")
    url = f"sqlite:///{folder}/studied/segtune/study.db"
    served = []
    report = ProgressLine.on_trial_result

    def watch(self, iteration, trials, trial, result, **info):
        served.append([(t["number"], t["state"]) for t in dashboard_trials(url, "studied")])
        return report(self, iteration, trials, trial, result, **info)

    with pytest.MonkeyPatch.context() as patch:
        search_patches(patch)
        patch.setattr(ProgressLine, "on_trial_result", watch)
        cfg = load_config(None, {**SMOKE_TEST, "space": "smoke_broken", "num_samples": 6, "max_epochs": 3,
                                 "grace_period": 1, "n_startup_trials": 2, "max_concurrent_trials": 1,
                                 "name": "studied", "storage_path": str(folder),
                                 "tracking_uri": f"sqlite:///{folder}/mlflow.db"})
        outcome = run_search(cfg, trainable=dummy_trainable())
    return cfg, outcome, url, served


def summary(study: optuna.Study) -> dict:
    return {t.user_attrs[RAY_TRIAL_ID]: (t.state.name, t.value, t.params) for t in study.trials}


def test_optuna_dashboard_reads_the_study_in_the_experiment_folder_while_the_search_runs(studied_search):
    cfg, outcome, url, served = studied_search
    assert url == f"sqlite:///{outcome.paths.study}" and outcome.paths.study.is_file()
    # the first epoch reported: the dashboard served the first trial, running; the last: all six, finished
    assert served[0] == [(0, "Running")]
    assert len(served[-1]) == cfg.num_samples and "Complete" in {state for _, state in served[-1]}
    assert [len(trials) for trials in served] == sorted(len(trials) for trials in served)  # trials appear as asked


def test_the_study_holds_rays_trials_with_their_params_outcome_and_value(studied_search):
    cfg, outcome, url, _ = studied_search
    study = optuna.load_study(study_name=cfg.name, storage=url)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    trials = summary(study)
    assert sorted(trials) == sorted(row.trial_id for row in outcome.leaderboard)  # none lost, none twice
    assert {row.outcome for row in outcome.leaderboard} >= {"completed", "failed"}
    for row in outcome.leaderboard:
        state, value, params = trials[row.trial_id]
        assert state == OUTCOME_STATES[row.outcome]
        if row.outcome != "failed":  # the failing trial's config holds the encoder its space returned over the proposal
            assert params == {k: row.params[k] for k in params}
        if state == "COMPLETE":  # a finished trial is told its best epoch's val mIoU, as the leaderboard ranks it
            assert value == pytest.approx(row.val_miou)
    assert summary(outcome.searcher.study) == trials  # the searcher the driver returns reads the same study


def test_resume_makes_a_study_that_lost_a_trial_and_gained_one_agree_with_rays_state_again(studied_search, capsys):
    """After the other tests of this module: it resumes their search. Ray's state has every trial finished; the
    study is made to lack one of them (a database older than Ray's state) and to hold a trial Ray never saved
    (asked after Ray's last snapshot)."""
    cfg, outcome, url, _ = studied_search
    before = summary(optuna.load_study(study_name=cfg.name, storage=url))
    storage = open_storage(url)
    trials = optuna.load_study(study_name=cfg.name, storage=storage).trials
    lost = next(t for t in trials if t.state == optuna.trial.TrialState.COMPLETE)
    ghost = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, params=lost.params,
                                      distributions=lost.distributions, user_attrs={RAY_TRIAL_ID: "asked-after"})
    write_study(storage, cfg.name, [t for t in trials if t is not lost] + [ghost])

    with pytest.MonkeyPatch.context() as patch:
        search_patches(patch)
        resumed = run_search(cfg, resume=True, trainable=dummy_trainable())
    assert "made to agree with Ray's saved state: 1 dropped" in capsys.readouterr().out
    after = summary(optuna.load_study(study_name=cfg.name, storage=url))
    assert after == before  # the lost trial made again from Ray's config and result, the other dropped
    assert len(resumed.leaderboard) == cfg.num_samples
