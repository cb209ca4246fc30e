"""Optuna's sampler (TPE, random or GP) behind Ray Tune, with ASHA-stopped trials told to Optuna as PRUNED.

Ray's OptunaSearch tells Optuna that a trial ASHA stopped is COMPLETE with its last, early
score, so TPE ranks an epoch-1 score against epoch-6 scores. Here a stopped trial is told
PRUNED with its last score as an intermediate value (Ray does not pass the result that made
ASHA stop a trial to the searcher), and TPE ranks a pruned trial by that value, below the
trials that finished. A trial that finished (all epochs, or its own early stopping) is told
its best epoch's score, since its best checkpoint is what the search delivers.
"""

from __future__ import annotations

import warnings

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from search.config import SearchConfig
from segtune import names


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


class AshaAwareOptunaSearch(OptunaSearch):
    def __init__(self, *args, max_epochs: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_epochs = max_epochs

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        value = (result or {}).get(names.OBJECTIVE)
        epoch = (result or {}).get(names.EPOCH, self.max_epochs)
        finished = epoch >= self.max_epochs or (result or {}).get(names.EARLY_STOPPED)
        if error or value is None or finished or trial_id in self._completed_trials:
            if finished and not error and value is not None:  # a finished trial delivers its best epoch
                result = {**result, names.OBJECTIVE: result.get(names.BEST_VAL_MIOU, value)}
            return super().on_trial_complete(trial_id, result, error)
        ot_trial = self._ot_trials[trial_id]
        step = int(result["training_iteration"])
        if step not in self._ot_study.trials[ot_trial.number].intermediate_values:
            ot_trial.report(value, step)
        self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
        self._completed_trials.add(trial_id)

    @property
    def study(self) -> optuna.Study:
        return self._ot_study
