"""The one module that talks to MLflow: a parent run per search, a nested child run per trial.

Children are written by the driver (a Tune callback), not inside trials: a trial stopped by ASHA
cannot close its own run, and only the driver needs to reach the tracking server.
If the store cannot be reached, the search goes on: the failure is reported once, the tracker goes
offline (no retry per epoch), and `segtune mlflow EXPERIMENT` logs the finished search later
from the experiment folder (search/replay.py).

A password in the tracking URI (http://user:pass@host:5000, postgresql://user:pass@host/db) is shown,
saved and pickled masked (user:***@host); the full URI stays in this process's environment
(SEGTUNE_TRACKING_URI), where the tracker finds it, and an http password reaches MLflow as
MLFLOW_TRACKING_PASSWORD.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import mlflow
import requests
import sqlalchemy.exc
import urllib3.exceptions
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from ray import tune

from segtune import names

PARENT_TAG = "mlflow.parentRunId"
TRACKING_ERRORS = (MlflowException, OSError, requests.RequestException, urllib3.exceptions.HTTPError,
                   sqlalchemy.exc.OperationalError, ImportError)
"""What a store that cannot be reached raises; anything else is a bug in segtune and is raised, not switched off.
Measured on mlflow 3.17: an http store with nothing listening, or an unknown host, raises MlflowException over
requests' ConnectionError (an OSError); a sqlite file that cannot be opened, sqlalchemy's OperationalError;
postgresql:// without its driver installed, ModuleNotFoundError."""
# MLflow retries an unreachable server for minutes by default; a search should notice in seconds
# (the tracker then goes offline). A user's own setting wins.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
TRACKING_URI_VARIABLE = "SEGTUNE_TRACKING_URI"
"""The full tracking URI, password included, when the one saved with an experiment is masked."""
MASK = "***"


def mask_password(uri: str) -> str:
    """The URI as it may be printed, saved or logged: http://user:pass@host -> http://user:***@host."""
    parts = urlsplit(uri)
    if not parts.password:
        return uri
    userinfo, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:{MASK}@{host}"))


def hide_password(uri: str) -> str:
    """mask_password(uri); a URI with a real password is kept whole in SEGTUNE_TRACKING_URI for the tracker."""
    masked = mask_password(uri)
    if masked != uri and urlsplit(uri).password != MASK:
        os.environ[TRACKING_URI_VARIABLE] = uri
    return masked


def store_uri(masked: str) -> str:
    """The URI to connect with: the full one from SEGTUNE_TRACKING_URI when it masks to `masked`.

    An http password goes to MLflow as MLFLOW_TRACKING_USERNAME/PASSWORD, not in the URL, so MLflow's
    own error messages, which quote the URL, carry no password.
    """
    full = os.environ.get(TRACKING_URI_VARIABLE, "")
    uri = full if full and mask_password(full) == masked else masked
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.password:
        return uri  # not rebuilt: urlunsplit would turn sqlite:////abs into sqlite://abs
    os.environ["MLFLOW_TRACKING_USERNAME"] = unquote(parts.username)
    if parts.password != MASK:  # else a password the user set in MLFLOW_TRACKING_PASSWORD
        os.environ["MLFLOW_TRACKING_PASSWORD"] = unquote(parts.password)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"


def runs_page(server: str, experiment_id: str) -> str:
    """The experiment's runs table in MLflow's UI. MLflow 3.17's UI picks GenAI or model-training pages by a toggle
    it remembers in the browser (GenAI at first) and ignores the experiment's kind tag while the toggle shows, so the
    link names the model-training view."""
    return f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def artifact_location(uri: str) -> str | None:
    """Artifacts of a SQLite store go in `mlruns` beside its database file, not in the folder a command ran from
    (MLflow's default); None (the server's own default) for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri[len("sqlite:///"):]).resolve()
    return (database.parent / "mlruns").as_uri()


def without_secret(text: str) -> str:
    """Text (an error message) with the tracking password, if any, masked."""
    secret = urlsplit(os.environ.get(TRACKING_URI_VARIABLE, "")).password
    return text.replace(secret, MASK) if secret else text


def _tolerant(method):
    """A failing store never stops a search: the first of TRACKING_ERRORS is reported, the tracker goes offline."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if self.failed:
            return None
        try:
            return method(self, *args, **kwargs)
        except TRACKING_ERRORS as error:
            if not self.failed:
                reason = without_secret(str(error).splitlines()[0][:300])
                warnings.warn(f"MLflow logging to {self.tracking_uri} failed ({reason}); "
                              "logging is off from here, the work goes on and results stay in the experiment "
                              "folder (`segtune mlflow EXPERIMENT` logs them later)")
            self.failed = True
    return wrapper


class Tracker:
    """Parent and child runs of one search in one MLflow experiment."""

    def __init__(self, tracking_uri: str, experiment: str):
        # only the masked URI is kept: Ray pickles the tracker (in the Tune callback) into the experiment folder
        self.tracking_uri, self.failed, self._client = hide_password(tracking_uri), False, None
        self.experiment_id: str | None = None
        self.parent_id: str | None = None
        self._children: dict[str, str] = {}
        self._open_experiment(experiment)

    @_tolerant
    def _open_experiment(self, experiment: str) -> None:
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = found.experiment_id if found else \
            self.client.create_experiment(experiment, artifact_location=artifact_location(self.tracking_uri))
        if found is None or EXPERIMENT_KIND_TAG not in found.tags:
            # MLflow 3's UI opens an untagged experiment on its GenAI pages (traces, evaluations); this tag makes
            # it open on the training runs, as the "Machine learning" kind of its experiment-type picker does
            self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(store_uri(self.tracking_uri))
        return self._client

    def __getstate__(self):
        # Ray pickles callbacks with the experiment state; a live store connection cannot travel.
        return {**self.__dict__, "_client": None}

    @_tolerant
    def start_parent(self, search_name: str, params: dict, resume_id: str | None = None) -> str:
        if resume_id:
            self.client.update_run(resume_id, status="RUNNING")
            self.parent_id = resume_id
        else:
            run = self.client.create_run(self.experiment_id, run_name=search_name, tags={names.TAG_SEARCH: search_name})
            self.parent_id = run.info.run_id
            self.log_params(self.parent_id, params)
        return self.parent_id

    def log_params(self, run_id: str, params: dict) -> None:
        """One batch (MLflow's client sends 100 a request): a request per parameter cost 0.6 s a trial on SQLite."""
        # MLflow keys allow no '@'; branch-specific parameters (encoder@dilatable) become encoder:dilatable
        self.client.log_batch(run_id, params=[mlflow.entities.Param(key.replace("@", ":"), str(value)[:6000])
                                              for key, value in params.items()])

    @_tolerant
    def child(self, trial_id: str, params: dict, run_name: str | None = None, tags: dict | None = None) -> str:
        """The trial's child run, found again after a resume rather than created twice; a new one is named run_name
        (default: the trial id) and carries `tags` besides the parent's and the trial's."""
        if trial_id in self._children:
            return self._children[trial_id]
        found = self.client.search_runs(
            [self.experiment_id],
            f"tags.`{PARENT_TAG}` = '{self.parent_id}' and tags.`{names.TAG_TRIAL_ID}` = '{trial_id}'")
        if found:
            run_id = found[0].info.run_id
            if found[0].info.status != "RUNNING":
                self.client.update_run(run_id, status="RUNNING")
        else:
            run_id = self.client.create_run(self.experiment_id, run_name=run_name or trial_id, tags={
                PARENT_TAG: self.parent_id, names.TAG_TRIAL_ID: trial_id, **(tags or {})}).info.run_id
            self.log_params(run_id, params)
        self._children[trial_id] = run_id
        return run_id

    @_tolerant
    def log_epoch(self, trial_id: str, params: dict, result: dict) -> None:
        run_id = self.child(trial_id, params)
        step = int(result[names.EPOCH])
        metrics = [mlflow.entities.Metric(k, float(v), 0, step) for k, v in result.items()
                   if _is_metric(k, v)]
        self.client.log_batch(run_id, metrics=metrics)

    @_tolerant
    def close_child(self, trial_id: str, params: dict, outcome: str, error: str | None = None) -> None:
        run_id = self.child(trial_id, params)
        self.client.set_tag(run_id, names.TAG_OUTCOME, outcome)
        if error:
            self.client.set_tag(run_id, names.TAG_ERROR, error[-4000:])
        status = {"completed": "FINISHED", "early_stopping": "FINISHED", "failed": "FAILED"}.get(outcome, "KILLED")
        self.client.set_terminated(run_id, status)

    @_tolerant
    def close_open_children(self) -> int:
        """Mark every child still RUNNING as KILLED (interrupted); returns how many there were."""
        runs = self.client.search_runs([self.experiment_id], f"tags.`{PARENT_TAG}` = '{self.parent_id}' and attributes.status = 'RUNNING'")
        for run in runs:
            self.client.set_tag(run.info.run_id, names.TAG_OUTCOME, "interrupted")
            self.client.set_terminated(run.info.run_id, "KILLED")
        return len(runs)

    @_tolerant
    def log_artifact(self, path: str, folder: str | None = None, run_id: str | None = None) -> None:
        self.client.log_artifact(run_id or self.parent_id, path, folder)

    @_tolerant
    def start_stage_run(self, kind: str, params: dict) -> str:
        """A child of the parent run for work after the search (kind "ensemble"), tagged segtune.kind."""
        run = self.client.create_run(self.experiment_id, run_name=kind, tags={PARENT_TAG: self.parent_id,
                                                                                names.TAG_KIND: kind})
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    @_tolerant
    def log_metrics(self, run_id: str, metrics: dict) -> None:
        finite = [mlflow.entities.Metric(k, float(v), 0, 0) for k, v in metrics.items() if math.isfinite(float(v))]
        self.client.log_batch(run_id, metrics=finite)

    @_tolerant
    def finish_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    @_tolerant
    def log_summary(self, metrics: dict) -> None:
        for key, value in metrics.items():
            self.client.log_metric(self.parent_id, key, float(value))

    @_tolerant
    def finish_parent(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.parent_id, status)


def _is_metric(key, value) -> bool:
    reported = key.startswith("val_") or key in (names.TRAIN_LOSS, names.BEST_VAL_MIOU, names.LR, names.LOSS_STAGE)
    return reported and isinstance(value, (int, float)) and math.isfinite(value)


class MlflowTrialCallback(tune.Callback):
    """Driver-side: params once, metrics per epoch (step = epoch), a final outcome per trial."""

    def __init__(self, tracker: Tracker, fixed: dict, max_epochs: int):
        self.tracker, self.fixed, self.max_epochs = tracker, fixed, max_epochs

    def _params(self, trial) -> dict:
        return {**self.fixed, **trial.config}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.tracker.child(trial.trial_id, self._params(trial))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.tracker.log_epoch(trial.trial_id, self._params(trial), result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        outcome = names.outcome_of(last.get(names.EPOCH, 0), self.max_epochs, bool(last.get(names.EARLY_STOPPED)))
        self.tracker.close_child(trial.trial_id, self._params(trial), outcome)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.tracker.close_child(trial.trial_id, self._params(trial), "failed", trial_error_text(trial))


def trial_error_text(trial) -> str:
    """The failed trial's traceback, from the error file Ray has just written on the driver's disk.

    (Trial.get_error() reads the copy in storage, which is not synced yet when callbacks run.)
    """
    path = trial.error_file
    if path and Path(path).exists():
        return Path(path).read_text(errors="replace").strip()
    error = trial.get_error()
    return str(error).strip() if error else "unknown error (no error file)"
