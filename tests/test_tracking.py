"""The MLflow tracker: parameter names MLflow refuses are mapped, stage runs nest under the parent."""

import os
import pickle

import pytest
import requests
import sqlalchemy.exc
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from segtune import names
from segtune.tracking import PARENT_TAG, TRACKING_URI_VARIABLE, Tracker, mask_password, store_uri


class FailingClient:
    """An MLflow client whose every call raises `error`."""

    def __init__(self, error: Exception):
        self.error = error

    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise self.error
        return fail


def test_branch_parameters_are_logged_under_names_mlflow_accepts(tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "t")
    parent = tracker.start_parent("search", {"space": "crop_weed"})
    child = tracker.child("trial_1", {"encoder@dilatable": "resnet18", "lr": 0.001})
    assert not tracker.failed
    params = MlflowClient(tracker.tracking_uri).get_run(child).data.params
    assert params == {"encoder:dilatable": "resnet18", "lr": "0.001"}
    assert MlflowClient(tracker.tracking_uri).get_run(child).data.tags[PARENT_TAG] == parent


def test_a_trials_parameters_go_to_mlflow_in_a_batch_not_a_request_each(tmp_path, monkeypatch):
    # a request per parameter cost 0.6 s per trial of about 40 parameters on SQLite (bench/tiny_trials.py)
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "t")
    tracker.start_parent("search", {})

    def one_request_per_parameter(*args, **kwargs):
        raise AssertionError("log_param sends one request per parameter")

    monkeypatch.setattr(tracker.client, "log_param", one_request_per_parameter)
    params = {f"p{i:03d}": i for i in range(250)}  # more than MLflow takes in one request (100)
    child = tracker.child("trial_1", params)
    assert not tracker.failed
    assert MlflowClient(tracker.tracking_uri).get_run(child).data.params == {k: str(v) for k, v in params.items()}


def test_a_stage_run_is_a_tagged_child_of_the_parent_and_skips_non_finite_metrics(tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "t")
    parent = tracker.start_parent("search", {})
    run_id = tracker.start_stage_run("ensemble", {"chosen": "mean"})
    tracker.log_metrics(run_id, {"mean_test_miou": 0.5, "mean_cv_iou_rare": float("nan")})
    tracker.finish_run(run_id)
    run = MlflowClient(tracker.tracking_uri).get_run(run_id)
    assert run.data.tags[PARENT_TAG] == parent and run.data.tags[names.TAG_KIND] == "ensemble"
    assert run.data.metrics == {"mean_test_miou": 0.5}
    assert run.info.status == "FINISHED" and not tracker.failed


@pytest.mark.parametrize("error", [MlflowException("API request failed"), requests.ConnectionError("refused"),
                                   sqlalchemy.exc.OperationalError("SELECT", {}, "unable to open database file")])
def test_a_store_that_fails_switches_logging_off_with_one_warning(tmp_path, error):
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "t")
    tracker._client = FailingClient(error)
    with pytest.warns(UserWarning, match="MLflow logging to .* failed") as warned:
        assert tracker.start_parent("search", {}) is None
        tracker.child("trial_1", {"lr": 0.1})  # offline: not tried again, not warned again
    assert tracker.failed and len(warned) == 1


@pytest.mark.parametrize("bug", [TypeError("unsupported operand"), KeyError("trial_id"), AttributeError("no attr")])
def test_a_coding_bug_is_raised_not_taken_for_an_mlflow_failure(tmp_path, bug):
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "t")
    tracker._client = FailingClient(bug)
    with pytest.raises(type(bug)):
        tracker.start_parent("search", {})
    assert not tracker.failed


def test_a_password_in_the_tracking_uri_is_masked_in_messages_and_pickles_and_sent_as_basic_auth(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    for variable in (TRACKING_URI_VARIABLE, "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(variable, "")  # recorded, so the values the tracker sets are undone after the test
        monkeypatch.delenv(variable)
    with pytest.warns(UserWarning) as warned:  # nothing listens on the discard port: the tracker goes offline
        tracker = Tracker("http://ann:s3cret@127.0.0.1:9", "t")
    assert tracker.failed and "http://ann:***@127.0.0.1:9" in str(warned[0].message)
    assert "s3cret" not in str(warned[0].message) and b"s3cret" not in pickle.dumps(tracker)  # Ray pickles it
    assert store_uri(tracker.tracking_uri) == "http://127.0.0.1:9"  # MLflow's errors quote this URL
    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == ("ann", "s3cret")
    assert mask_password("postgresql://ann:s3cret@db.host/runs") == "postgresql://ann:***@db.host/runs"
    assert store_uri("postgresql://ann:***@db.host/runs") == "postgresql://ann:***@db.host/runs"  # none kept for it


def test_artifacts_go_beside_the_database_not_into_the_folder_the_command_ran_from(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    tracker = Tracker(f"sqlite:///{tmp_path}/store/mlflow.db", "t")
    run = tracker.start_parent("search", {})
    note = tmp_path / "leaderboard.csv"
    note.write_text("trial,val_miou\n")
    tracker.log_artifact(str(note), run_id=run)
    assert (tmp_path / "store" / "mlruns").is_dir()
    assert [p.name for p in (tmp_path / "store" / "mlruns").rglob("leaderboard.csv")] == ["leaderboard.csv"]
    assert list(elsewhere.iterdir()) == []


def test_the_default_relative_database_keeps_its_artifacts_in_mlruns_beside_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tracker = Tracker("sqlite:///mlflow.db", "t")
    assert MlflowClient(tracker.tracking_uri).get_experiment(tracker.experiment_id).artifact_location == \
        (tmp_path / "mlruns").as_uri()


def test_the_experiment_is_marked_as_model_training_so_the_ui_opens_on_its_runs(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    older = client.create_experiment("made-before")  # an experiment from before the tag keeps its runs, gains the tag
    for name in ("new", "made-before"):
        tracker = Tracker(uri, name)
        assert client.get_experiment(tracker.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    assert tracker.experiment_id == older


def test_the_runs_link_opens_mlflow_on_its_model_training_pages():
    from segtune.tracking import runs_page
    assert runs_page("http://127.0.0.1:5000/", "3") == \
        "http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning"
