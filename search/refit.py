"""Retrain chosen configs on K folds of train+val as Ray Tune trials: out-of-fold models, nnU-Net's way.

    plan = RefitPlan(configs, folds=carve_folds(...), val=splits["val"])
    fixed = check_refit(plan, cfg, data)                     # every trial's TrialConfig, before any compute
    outcome = run_refit(plan, cfg, data, fixed, tune_path, plan_file, paths, tracker)

Each (config, fold) is one trial of the search's trainable with the config's sampled parameters: it trains on
train+val less the fold and validates on the fold, its held-out images, for as many epochs as the search trial
trained (its last reported epoch), with early stopping off, so its last epoch's model is the fold model (nnU-Net
keeps its final checkpoint too: an epoch picked by the held-out fold's score would have seen those images). With
refit_all, each config is one more trial on all of train+val, validated on the search's val split, which it
trains on (so its scores say nothing). Normalisation and class pixel counts come from each trial's own training
images, as in a search.

The trials run through a Tuner of their own (as many at once as the cluster's resources hold), logged to
MLflow as children of the search's parent run, tagged with their config's rank and their fold. A later call with
the same plan restores that Tuner: finished trials are kept, unfinished and failed ones run (again); a folder
started for another plan is refused. The test split never reaches a trial: their data holds train+val only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ray import tune

from search.cluster import check_trial_fits, cluster_nodes, start_ray
from search.config import SearchConfig
from search.fixed import fixed_trial_params
from segtune import names, storage
from segtune.data import SegmentationData, without_images
from segtune.paths import ExperimentPaths
from segtune.tracking import MlflowTrialCallback, Tracker, trial_error_text
from trainables import TrialConfig, train_segmentation

RANK, FOLD, OF, EPOCHS = "refit_rank", "refit_fold", "refit_of", "refit_epochs"
"""Keys a refit trial's config carries besides the search trial's parameters; the trainable never sees them."""
REFIT_KEYS = (RANK, FOLD, OF, EPOCHS)
TRIAL = "refit"
"""A refit trial's Ray config is {TRIAL: its config}: a grid over the plan's configs, one trial each."""
ALL = "all"
"""The fold name of a config refitted on all of train+val."""


@dataclass(frozen=True)
class RefitConfig:
    rank: int
    """1 for the best of the configs refitted, by the search trial's val mIoU."""
    trial_id: str
    """The search trial whose config is retrained."""
    params: dict
    """Its sampled parameters (Ray's trial config)."""
    epochs: int
    """Epochs each of its refits trains: the search trial's own (refit_epochs)."""


@dataclass(frozen=True)
class RefitPlan:
    configs: tuple[RefitConfig, ...]
    """The configs to retrain, best first."""
    folds: tuple[tuple[str, ...], ...]
    """Each fold's held-out images; together they are train+val, each image in one fold."""
    val: tuple[str, ...]
    """The search's validation split: what a config refitted on all of train+val reports scores on."""
    refit_all: bool = False
    """Also retrain each config once on all of train+val (fold "all")."""

    def __post_init__(self):
        ids = [i for fold in self.folds for i in fold]
        if len(self.folds) < 2 or not all(self.folds) or len(ids) != len(set(ids)):
            raise ValueError(f"RefitPlan: {len(self.folds)} folds; a refit needs 2 or more non-empty folds, each "
                             "image in one")
        if not self.configs or len({c.rank for c in self.configs}) != len(self.configs):
            raise ValueError("RefitPlan: a refit needs one or more configs of distinct ranks")

    @property
    def train_val(self) -> list[str]:
        return sorted(i for fold in self.folds for i in fold)

    def fold_names(self) -> list[str]:
        """"0" .. "K-1", then "all" with refit_all."""
        return [str(f) for f in range(len(self.folds))] + ([ALL] if self.refit_all else [])

    def splits(self, fold: str) -> dict[str, list[str]]:
        """What the trainable trains (train) and scores (val) on in a trial of `fold`."""
        if fold == ALL:
            return {"train": self.train_val, "val": list(self.val)}
        held_out = set(self.folds[int(fold)])
        return {"train": [i for i in self.train_val if i not in held_out], "val": list(self.folds[int(fold)])}

    def trial_configs(self) -> list[dict]:
        """Each trial's config: the search trial's parameters with early stopping off, and the refit keys."""
        return [{**c.params, "early_stop_patience": None, RANK: c.rank, FOLD: fold, OF: c.trial_id, EPOCHS: c.epochs}
                for c in self.configs for fold in self.fold_names()]

    def to_json(self) -> dict:
        return {"folds": [list(f) for f in self.folds], "val": list(self.val), "refit_all": self.refit_all,
                "configs": [asdict(c) for c in self.configs]}


@dataclass(frozen=True)
class FoldTrial:
    rank: int
    fold: str
    trial_id: str
    """Ray's id of the refit trial."""
    status: str
    """Ray's: TERMINATED (finished), ERROR, or PENDING/RUNNING/PAUSED when a call was interrupted."""
    checkpoint: Path | None
    """Its last epoch's checkpoint file; None when it saved none."""
    error: str
    """The last line of a failed trial's error."""
    seconds: float
    """Its training time (Ray's time_total_s at its last report), whichever call ran it."""

    @property
    def finished(self) -> bool:
        return self.status == "TERMINATED" and self.checkpoint is not None


@dataclass
class RefitOutcome:
    trials: list[FoldTrial]
    ran: list[FoldTrial]
    """The trials this call ran; the others had finished in an earlier call."""
    seconds: float
    """Wall time of this call's Tuner (0 when every trial had finished before)."""

    @property
    def trial_seconds(self) -> float:
        """The refit's compute: every trial's training time, summed (trials run at once overlap in wall time)."""
        return sum(t.seconds for t in self.trials)

    def of(self, rank: int) -> dict[str, FoldTrial]:
        """A config's trials by fold name."""
        return {t.fold: t for t in self.trials if t.rank == rank}


def refit_epochs(trial_epochs: int, params: dict, fixed: dict) -> int:
    """The search trial's own epoch count: the length its score was earned at (max_epochs for a trial ASHA let run to
    the end, fewer for one it or its patience stopped), raised where needed to one more than its warm-up and
    progressive epochs, which a TrialConfig needs below max_epochs."""
    cfg = TrialConfig.from_dict({**fixed, **params})
    return max(trial_epochs, 1, cfg.warmup_epochs + 1, cfg.progressive_epochs + 1)


def check_refit(plan: RefitPlan, cfg: SearchConfig, data: SegmentationData) -> dict[str, dict]:
    """Every fold's fixed trial parameters (from its own training images, validation probabilities not kept), each
    trial's TrialConfig built once here so a bad one is refused before any compute."""
    fixed = {fold: {**fixed_trial_params(cfg, data, plan.splits(fold)).as_dict(), "keep_val_probabilities": False}
             for fold in plan.fold_names()}
    for config in plan.trial_configs():
        try:
            TrialConfig.from_dict({**fixed[config[FOLD]], "max_epochs": config[EPOCHS],
                                   **{k: v for k, v in config.items() if k not in REFIT_KEYS}})
        except (KeyError, ValueError) as error:
            raise ValueError(f"refit of trial {config[OF]} (config {config[RANK]}, fold {config[FOLD]}): {error}") from None
    return fixed


def run_refit(plan: RefitPlan, cfg: SearchConfig, data: SegmentationData, fixed: dict[str, dict], tune_path: str,
              plan_file: Path, paths: ExperimentPaths, tracker: Tracker | None,
              trainable: Callable | None = None) -> RefitOutcome:
    """Run (or resume) the plan's trials in the Ray experiment at tune_path; `fixed` is check_refit's.
    trainable: None for this module's train_segmentation (looked up here, so tests can wrap it)."""
    check_saved_plan(plan, plan_file)
    earlier = _read_trials(tune_path, paths)
    kept = {(t.rank, t.fold) for t in earlier if t.finished}
    if kept == {(c.rank, fold) for c in plan.configs for fold in plan.fold_names()}:
        print(f"refit: all {len(kept)} trials finished in an earlier call; Ray experiment {tune_path}", flush=True)
        return RefitOutcome(earlier, [], 0.0)  # nothing to run: no Ray
    start_ray(cfg)
    check_trial_fits(cfg, cluster_nodes())
    plan_file.parent.mkdir(parents=True, exist_ok=True)
    plan_file.write_text(json.dumps(plan.to_json(), indent=1))
    train_val = set(plan.train_val)
    function = tune.with_resources(
        tune.with_parameters(_fold_trial, train=trainable or train_segmentation, fixed=fixed,
                             data=without_images(data, [i for i in data.names if i not in train_val], "the refit"),
                             splits={fold: plan.splits(fold) for fold in plan.fold_names()}),
        {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial})
    points = plan.trial_configs()
    print(f"refit: {len(points)} trials ({len(plan.configs)} configs x {len(plan.fold_names())} folds), "
          f"{len(kept)} finished in an earlier call and kept; Ray experiment {tune_path}", flush=True)
    tuner = (tune.Tuner.restore(tune_path, trainable=function, resume_unfinished=True, resume_errored=True)
             if tune.Tuner.can_restore(tune_path) else _build_tuner(function, points, cfg, fixed, tune_path, tracker))
    started = time.perf_counter()
    try:
        tuner.fit()
    except KeyboardInterrupt:
        if tracker is not None:
            tracker.close_open_children()
        print("refit interrupted; run the same command again to resume it (finished trials are kept)")
        raise
    trials = _read_trials(tune_path, paths)
    return RefitOutcome(trials, [t for t in trials if (t.rank, t.fold) not in kept], time.perf_counter() - started)


def check_saved_plan(plan: RefitPlan, plan_file: Path) -> None:
    """A refit folder resumes only the plan it was started with."""
    if not plan_file.is_file():
        return
    saved, current = json.loads(plan_file.read_text()), json.loads(json.dumps(plan.to_json()))  # lists, as saved
    if saved == current:
        return
    differs = [key for key in current if saved.get(key) != current[key]]
    raise ValueError(f"{plan_file.parent} holds a refit started for another plan ({', '.join(differs)} differ: e.g. "
                     "the search has new trials, or --keep-similar changed which configs are refitted); delete that "
                     "folder to refit anew, or pass the options it was started with")


def _fold_trial(config: dict, train: Callable, data: SegmentationData, splits: dict[str, dict],
                fixed: dict[str, dict]) -> None:
    """One (config, fold) trial: the trainable `train` on the fold's splits, for the config's epochs."""
    refit = config[TRIAL]
    fold = refit[FOLD]
    train({k: v for k, v in refit.items() if k not in REFIT_KEYS}, data=data, splits=splits[fold],
          fixed={**fixed[fold], "max_epochs": refit[EPOCHS]})


def _build_tuner(function, points: list[dict], cfg: SearchConfig, fixed: dict[str, dict], tune_path: str,
                 tracker: Tracker | None) -> tune.Tuner:
    storage_path, _, name = tune_path.rstrip("/").rpartition("/")
    callbacks = [_RefitProgress(len(points))] + ([_RefitTracking(tracker, fixed)] if tracker is not None else [])
    return tune.Tuner(
        function,
        param_space={TRIAL: tune.grid_search(points)},
        tune_config=tune.TuneConfig(reuse_actors=True, trial_dirname_creator=lambda t: "config{}_fold{}".format(
            t.config[TRIAL][RANK], t.config[TRIAL][FOLD])),
        run_config=tune.RunConfig(name=name, storage_path=storage_path, verbose=0, callbacks=callbacks,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1),  # the last epoch's
                                  failure_config=tune.FailureConfig(max_failures=cfg.max_failures)))


def _read_trials(tune_path: str, paths: ExperimentPaths) -> list[FoldTrial]:
    """The refit experiment's trials as Ray saved them (none before its first call)."""
    if not tune.Tuner.can_restore(tune_path):
        return []
    analysis = tune.ExperimentAnalysis(tune_path)
    trials = []
    for trial in analysis.trials:
        checkpoint = analysis.get_last_checkpoint(trial)
        error = _last_line(trial_error_text(trial)) if trial.status == "ERROR" else ""
        trials.append(FoldTrial(trial.config[TRIAL][RANK], trial.config[TRIAL][FOLD], trial.trial_id, trial.status,
                                storage.local_checkpoint(storage.checkpoint_location(checkpoint), paths)
                                if checkpoint else None, error,
                                float((trial.last_result or {}).get("time_total_s", 0.0))))
    return sorted(trials, key=lambda t: (t.rank, t.fold == ALL, int(t.fold) if t.fold != ALL else 0))


class _RefitTracking(MlflowTrialCallback):
    """The search's MLflow callback for refit trials: each a child of the parent run, named and tagged with its
    config's rank, its fold and the search trial it retrains; complete once it trained its own epochs."""

    def __init__(self, tracker: Tracker, fixed: dict[str, dict]):
        super().__init__(tracker, {}, 0)
        self.fixed_by_fold = fixed

    def _params(self, trial) -> dict:
        config = trial.config[TRIAL]
        return {**self.fixed_by_fold[config[FOLD]], "max_epochs": config[EPOCHS], **config}

    def on_trial_start(self, iteration, trials, trial, **info):
        config = trial.config[TRIAL]
        self.tracker.child(trial.trial_id, self._params(trial),
                           run_name=f"refit config {config[RANK]} fold {config[FOLD]}",
                           tags={names.TAG_KIND: "refit", names.TAG_REFIT_RANK: str(config[RANK]),
                                 names.TAG_REFIT_FOLD: config[FOLD], names.TAG_REFIT_OF: config[OF]})

    def on_trial_complete(self, iteration, trials, trial, **info):
        epochs = (trial.last_result or {}).get(names.EPOCH, 0)
        self.tracker.close_child(trial.trial_id, self._params(trial),
                                 names.outcome_of(epochs, trial.config[TRIAL][EPOCHS]))


class _RefitProgress(tune.Callback):
    """One line per refit epoch: config, fold, epoch, the held-out fold's mIoU, trials in each state."""

    def __init__(self, total: int):
        self.total = total

    def on_trial_result(self, iteration, trials, trial, result, **info):
        config, states = trial.config[TRIAL], {}
        for t in trials:
            states[t.status.lower()] = states.get(t.status.lower(), 0) + 1
        score = "val mIoU (trained on)" if config[FOLD] == ALL else "held-out mIoU"
        print(f"[refit config {config[RANK]} fold {config[FOLD]} epoch {result[names.EPOCH]}/{config[EPOCHS]}] "
              f"{score} {result.get(names.VAL_MIOU, float('nan')):.3f} | trials {len(trials)}/{self.total}: "
              + " ".join(f"{k}={v}" for k, v in sorted(states.items())), flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        config = trial.config[TRIAL]
        print(f"[refit config {config[RANK]} fold {config[FOLD]}] FAILED: {_last_line(trial_error_text(trial))} "
              "(the other trials go on)", flush=True)



def _last_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[-1]
