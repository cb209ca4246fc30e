"""The search's Optuna study in a database, where optuna-dashboard reads it while the search runs, and kept in step
with Ray Tune's saved state when a search resumes.

    optuna-dashboard sqlite:////abs/path/segtune_results/<name>/segtune/study.db

The database is study_storage (an SQLAlchemy URL: sqlite:////abs/file.db, postgresql://host/db), by default the
SQLite file segtune/study.db in the experiment folder (segtune/paths.py). The study is named after the experiment,
so one database holds many searches; each Optuna trial carries its Ray trial id (user attribute ray_trial_id).

Resuming. The searcher writes the study as trials are asked and finish, while Ray Tune saves its experiment state
every few seconds, so a driver killed in between leaves the two apart. Ray's saved state is the source of truth:
--resume continues from it (a trial finished there is not run again, an unfinished one runs on from its checkpoint
there, one started after it does not exist for the resumed search), and the leaderboard, the checkpoints and MLflow
follow it; the study cannot make Ray run or forget a trial. So reconcile() makes the study hold exactly Ray's trials,
finished as Ray has them, keeping what the database adds (intermediate values, times) where the two agree:

- a study trial Ray has no trial for (asked after Ray's last snapshot) is dropped; a starting recipe among them is
  queued again, since Ray asks for a new trial in its place;
- a trial finished in the study but unfinished in Ray's state runs again (RUNNING, its params and intermediate
  values kept; an epoch trained again reports a step Optuna already has, which Optuna ignores);
- a trial unfinished in the study but finished in Ray's state is told Ray's last result, by the searcher's rule;
- a Ray trial the study lacks (a database lost, or an older copy) is made from its config and last result (one whose
  config is no point of the space, since the space returned a value over a proposed one, stays out, and is named).

Optuna can neither delete nor reopen a trial, so a study that disagrees is deleted and written again under the same
name (a dashboard lists it again under that name); one that agrees is left untouched.
"""

from __future__ import annotations

import datetime
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from search.searcher import RAY_TRIAL_ID, trial_outcome
from segtune import names
from segtune.paths import ExperimentPaths

DIRECTION = "maximize" if names.OBJECTIVE_MODE == "max" else "minimize"
QUEUED = "fixed_params"
"""Optuna's system attribute of a trial queued with enqueue_trial (the preset's starting recipes)."""


def study_url(study_storage: str | None, paths: ExperimentPaths) -> str:
    """The database of an experiment's study: study_storage, else segtune/study.db in its (local) folder."""
    return study_storage or f"sqlite:///{paths.study}"


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """The database at url (Optuna makes its tables if new); one that cannot be opened is refused, naming it."""
    try:
        return optuna.storages.RDBStorage(url)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as error:
        cause = str(error.__cause__ or error).splitlines()[0]
        raise ConnectionError(f"study_storage {url} cannot be opened ({cause}); check the URL, that the database "
                              "server answers and that its driver is installed") from None


def study_exists(url: str, name: str) -> bool:
    """Whether the database at url holds a study called name; an SQLite file that is not there is not made."""
    sqlite_file = sqlite_path(url)
    if sqlite_file is not None and not sqlite_file.is_file():
        return False
    return name in optuna.study.get_all_study_names(open_storage(url))


def sqlite_path(url: str) -> Path | None:
    parsed = sqlalchemy.engine.make_url(url)
    return Path(parsed.database) if parsed.get_backend_name() == "sqlite" and parsed.database else None


def check_new_study(url: str, name: str) -> None:
    """Before any compute: a new search's database opens and has no study of its name yet."""
    if study_exists(url, name):
        raise FileExistsError(f"study_storage {url} already holds a study named {name}: choose another --name, or "
                              f"delete that study (optuna delete-study --storage {url} --study-name {name})")


@dataclass(frozen=True)
class RayTrial:
    """One trial of Ray Tune's saved experiment state, as a resumed search starts from it."""
    trial_id: str
    status: str
    """Ray's trial status: TERMINATED, ERROR, or unfinished (RUNNING, PENDING, PAUSED)."""
    config: dict = field(default_factory=dict)
    last_result: dict = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """Ray will not run it again (a resumed search keeps an errored trial errored)."""
        return self.status in ("TERMINATED", "ERROR")


@dataclass(frozen=True)
class Reconciliation:
    """The study a resumed search must have (reconcile()), and what changed to get there."""
    trials: list[FrozenTrial]
    """The study's trials as they must be, in order: Ray's trials, and trials still queued."""
    dropped: list[int] = field(default_factory=list)
    """Numbers of study trials Ray has no trial for."""
    requeued: list[int] = field(default_factory=list)
    """Those of the dropped that were queued recipes, queued again."""
    reopened: list[str] = field(default_factory=list)
    """Ray trial ids finished in the study but unfinished in Ray's state."""
    told: list[str] = field(default_factory=list)
    """Ray trial ids unfinished in the study but finished in Ray's state."""
    made: list[str] = field(default_factory=list)
    """Ray trial ids the study lacked, made from Ray's config."""
    unmade: list[str] = field(default_factory=list)
    """Ray trial ids the study lacked whose config is no point of the space (it returned a value over a proposed
    one), so they stay out of the study."""

    @property
    def changed(self) -> bool:
        return bool(self.dropped or self.reopened or self.told or self.made or self.unmade)

    def describe(self) -> str:
        requeued = f"; {len(self.requeued)} recipe(s) queued again" if self.requeued else ""
        parts = [f"{len(self.dropped)} dropped (asked after Ray's last snapshot{requeued})" if self.dropped else "",
                 f"{len(self.reopened)} running again (unfinished in Ray's snapshot)" if self.reopened else "",
                 f"{len(self.told)} told Ray's result (finished in Ray's snapshot)" if self.told else "",
                 f"{len(self.made)} made from Ray's config and result (not in the database)" if self.made else "",
                 f"{len(self.unmade)} not in the database and not a point of the space, left out" if self.unmade
                 else ""]
        return "; ".join(part for part in parts if part)


def reconcile(ray_trials: Sequence[RayTrial], study_trials: Sequence[FrozenTrial],
              space: Callable[[optuna.Trial], dict | None], max_epochs: int) -> Reconciliation:
    """The study that holds exactly Ray's trials, finished as Ray has them (see the module's docstring). `space` and
    max_epochs make a trial the study lacks from Ray's config, and tell a trial Ray finished its last result."""
    by_ray_id = {t.user_attrs[RAY_TRIAL_ID]: t for t in study_trials if RAY_TRIAL_ID in t.user_attrs}
    ray_ids = {ray.trial_id for ray in ray_trials}
    ordered: list[tuple[int, FrozenTrial]] = []  # study trials keep their order; trials made anew go last
    dropped, requeued, reopened, told, made, unmade = [], [], [], [], [], []
    for order, ray in enumerate(ray_trials):
        trial = by_ray_id.get(ray.trial_id)
        position = trial.number if trial is not None else len(study_trials) + order
        if trial is None:
            trial = _made(ray, space)
            if trial is None:
                unmade.append(ray.trial_id)
                continue
            made.append(ray.trial_id)
            trial = _told(trial, ray, max_epochs) if ray.finished else trial
        elif ray.finished and not trial.state.is_finished():
            told.append(ray.trial_id)
            trial = _told(trial, ray, max_epochs)
        elif not ray.finished and trial.state.is_finished():
            reopened.append(ray.trial_id)
            trial = _running(trial)
        ordered.append((position, trial))
    for trial in study_trials:
        if trial.state == TrialState.WAITING:
            ordered.append((trial.number, trial))
        elif trial.user_attrs.get(RAY_TRIAL_ID) not in ray_ids:
            dropped.append(trial.number)
            if QUEUED in trial.system_attrs:
                requeued.append(trial.number)
                ordered.append((trial.number, _queued(trial)))
    trials = [trial for _, trial in sorted(ordered, key=lambda pair: pair[0])]
    return Reconciliation(trials, dropped, requeued, reopened, told, made, unmade)


def reconcile_study(storage: optuna.storages.BaseStorage, name: str, ray_trials: Sequence[RayTrial],
                    space: Callable[[optuna.Trial], dict | None], max_epochs: int) -> Reconciliation:
    """reconcile() the study called name in storage with Ray's trials, and write it again if it disagrees (or is
    not there)."""
    exists = name in optuna.study.get_all_study_names(storage)
    study_trials = optuna.load_study(study_name=name, storage=storage).get_trials() if exists else []
    reconciled = reconcile(ray_trials, study_trials, space, max_epochs)
    if reconciled.changed or not exists:
        write_study(storage, name, reconciled.trials)
    return reconciled


def write_study(storage: optuna.storages.BaseStorage, name: str, trials: Sequence[FrozenTrial]) -> optuna.Study:
    """The study called name holding exactly `trials`, in order (numbered anew); one there before is deleted."""
    if name in optuna.study.get_all_study_names(storage):
        optuna.delete_study(study_name=name, storage=storage)
    study = new_study(storage, name)
    study.add_trials(trials)
    return study


def new_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    study = optuna.create_study(storage=storage, study_name=name, direction=DIRECTION)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([names.OBJECTIVE])  # the dashboard's name for the value
    return study


def _made(ray: RayTrial, space: Callable[[optuna.Trial], dict | None]) -> FrozenTrial | None:
    """A RUNNING trial with the params Ray's config holds, their distributions from the space; None when the config
    is no point of the space."""
    fixed = optuna.trial.FixedTrial(ray.config)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # FixedTrial's for a value outside its distribution
            space(fixed)
        return optuna.trial.create_trial(state=TrialState.RUNNING, params=dict(fixed.params),
                                         distributions=dict(fixed.distributions),
                                         user_attrs={RAY_TRIAL_ID: ray.trial_id})
    except ValueError:  # a parameter missing from the config, or a value outside its distribution
        return None


def _told(trial: FrozenTrial, ray: RayTrial, max_epochs: int) -> FrozenTrial:
    """The trial finished with Ray's last result, as the searcher was told it (Ray tells an error without one)."""
    errored = ray.status == "ERROR"
    state, value, step = trial_outcome(None if errored else ray.last_result, errored, max_epochs)
    intermediate = dict(trial.intermediate_values)
    if step is not None:
        intermediate.setdefault(step, value)
    if state == TrialState.PRUNED:  # Optuna's tell gives a pruned trial its last intermediate value, if any
        value = intermediate[max(intermediate)] if intermediate else None
    return _copy(trial, state=state, value=value if state != TrialState.FAIL else None,
                 datetime_complete=_now(), intermediate_values=intermediate)


def _running(trial: FrozenTrial) -> FrozenTrial:
    return _copy(trial, state=TrialState.RUNNING, value=None, datetime_complete=None)


def _queued(trial: FrozenTrial) -> FrozenTrial:
    """The recipe the trial was queued with, waiting again to be asked."""
    return FrozenTrial(number=trial.number, state=TrialState.WAITING, value=None, datetime_start=None,
                       datetime_complete=None, params={}, distributions={}, user_attrs={},
                       system_attrs={QUEUED: trial.system_attrs[QUEUED]}, intermediate_values={}, trial_id=0)


def _copy(trial: FrozenTrial, **changes) -> FrozenTrial:
    fields = dict(number=trial.number, state=trial.state, value=trial.value if trial.values else None,
                  datetime_start=trial.datetime_start, datetime_complete=trial.datetime_complete,
                  params=trial.params, distributions=trial.distributions, user_attrs=trial.user_attrs,
                  system_attrs=trial.system_attrs, intermediate_values=trial.intermediate_values,
                  trial_id=trial._trial_id)
    return FrozenTrial(**{**fields, **changes})


def _now() -> datetime.datetime:
    return datetime.datetime.now()
