"""Optuna's sampler (TPE, random or GP) behind Ray Tune, with ASHA-stopped trials told to Optuna as PRUNED, and its
study in a database (search/study.py) rather than in Ray's pickled searcher state.

Ray's OptunaSearch tells Optuna that a trial ASHA stopped is COMPLETE with its last, early
score, so TPE ranks an epoch-1 score against epoch-6 scores. Here a stopped trial is told
PRUNED with its last score as an intermediate value (Ray does not pass the result that made
ASHA stop a trial to the searcher), and TPE ranks a pruned trial by that value, below the
trials that finished. A trial that finished (all epochs, or its own early stopping) is told
its best epoch's score, since its best checkpoint is what the search delivers.

Ray's OptunaSearch saves its study with its own state (a pickle in the experiment folder). Here the study lives in
an Optuna RDB storage that optuna-dashboard can read while the search runs: the saved state leaves the study and
its live trials out, and whoever restores the searcher attaches the storage (search/driver.py). Each Optuna trial
records its Ray trial id (user attribute ray_trial_id), which is how a restored searcher finds its trials again.
"""

from __future__ import annotations

import pickle
import warnings

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from search.config import SearchConfig
from segtune import names

RAY_TRIAL_ID = "ray_trial_id"
"""The Optuna trial's user attribute holding the id of the Ray Tune trial it is."""

_LIVE = ("_ot_study", "_storage", "_ot_trials", "_completed_trials")
"""OptunaSearch's attributes that are the study itself (in the database), never saved with the searcher."""


def build_sampler(cfg: SearchConfig) -> optuna.samplers.BaseSampler:
    """The Optuna sampler cfg.sampler names, seeded with cfg.seed."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=cfg.seed)
    if cfg.sampler == "gp":
        # GP models only the parameters every finished trial has (Optuna's intersection space); a conditional
        # parameter is drawn at random, which it would warn about on every trial. It learns from COMPLETE
        # trials only: an ASHA-stopped (PRUNED) trial is invisible to it.
        return optuna.samplers.GPSampler(seed=cfg.seed, n_startup_trials=cfg.n_startup_trials,
                                         warn_independent_sampling=False)
    # multivariate + group model the conditional spaces jointly; constant_liar keeps
    # concurrent proposals apart while earlier trials are still running.
    return optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=cfg.n_startup_trials,
                                      multivariate=cfg.tpe_multivariate, group=cfg.tpe_group,
                                      constant_liar=cfg.tpe_constant_liar)


def trial_outcome(result: dict | None, error: bool, max_epochs: int) -> tuple[TrialState, float | None, int | None]:
    """What Optuna is told of a trial Ray ended with `result` (its last report, None if it reported none):
    (state, value, step). A finished trial is COMPLETE with its best epoch's score; one stopped before max_epochs
    (ASHA, a budget) is PRUNED with its last score as the intermediate value at `step`; an errored trial without a
    result FAILs, and a trial stopped before it reported is PRUNED without a value (as Ray's OptunaSearch does)."""
    result = result or {}
    value = result.get(names.OBJECTIVE)
    if value is None:
        return (TrialState.FAIL if error else TrialState.PRUNED), None, None
    finished = result.get(names.EPOCH, max_epochs) >= max_epochs or result.get(names.EARLY_STOPPED)
    if error:
        return TrialState.COMPLETE, value, None
    if finished:
        return TrialState.COMPLETE, result.get(names.BEST_VAL_MIOU, value), None
    return TrialState.PRUNED, value, int(result["training_iteration"])


class AshaAwareOptunaSearch(OptunaSearch):
    def __init__(self, *args, max_epochs: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_epochs = max_epochs

    def suggest(self, trial_id: str) -> dict | None:
        asked = trial_id not in self._ot_trials
        config = super().suggest(trial_id)
        if asked:
            self._ot_trials[trial_id].set_user_attr(RAY_TRIAL_ID, trial_id)
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        state, value, step = trial_outcome(result, error, self.max_epochs)
        if state != TrialState.PRUNED or step is None or trial_id in self._completed_trials:
            told = {**result, names.OBJECTIVE: value} if result and value is not None else result
            return super().on_trial_complete(trial_id, told, error)
        ot_trial = self._ot_trials[trial_id]
        if step not in self._ot_study.get_trials(deepcopy=False)[ot_trial.number].intermediate_values:
            ot_trial.report(value, step)
        self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
        self._completed_trials.add(trial_id)

    def attach(self, storage: optuna.storages.BaseStorage) -> None:
        """Work on the study named after the search in `storage`, with this searcher's sampler: its trials that
        carry a Ray trial id become this searcher's (Ray reports on them by that id)."""
        self._storage = storage
        self._ot_study = optuna.load_study(study_name=self._study_name, storage=storage, sampler=self._sampler,
                                           pruner=optuna.pruners.NopPruner())
        self._ot_trials, self._completed_trials = {}, set()
        for trial in self._ot_study.get_trials(deepcopy=False):
            ray_id = trial.user_attrs.get(RAY_TRIAL_ID)
            if ray_id is not None:
                self._ot_trials[ray_id] = optuna.Trial(self._ot_study, trial._trial_id)
                if trial.state.is_finished():
                    self._completed_trials.add(ray_id)

    def __getstate__(self) -> dict:
        # the sampler (its random state), space and settings; the study stays in its database
        return {key: value for key, value in self.__dict__.items() if key not in _LIVE}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._ot_study, self._storage, self._ot_trials, self._completed_trials = None, None, {}, set()

    def save(self, checkpoint_path: str):
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.__getstate__(), handle)

    def restore(self, checkpoint_path: str):
        """The state saved by save(); an attached storage stays attached, its study opened with the restored
        sampler. A state saved before the study had a database holds the study itself, kept when none is attached."""
        with open(checkpoint_path, "rb") as handle:
            state = pickle.load(handle)
        storage = self._storage
        if storage is not None:
            state = {key: value for key, value in state.items() if key not in _LIVE}
        self.__dict__.update(state)
        if storage is not None:
            self.attach(storage)

    @property
    def study_name(self) -> str:
        return self._study_name

    @property
    def study(self) -> optuna.Study | None:
        """The study, once created or attached (a searcher restored from its saved state has none until then)."""
        return self._ot_study
