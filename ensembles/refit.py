"""`segtune ensemble --refit-folds K --refit-top M`: the ensemble fitted on out-of-fold probabilities, nnU-Net's way.

The M best configs are retrained on K folds of train+val (search/refit.py: Ray Tune trials, resumable, logged
to MLflow under the search's parent run), so every train and validation image gets, from each config, the class
probabilities of the fold model that did not train on it. The candidates (best single, mean, greedy and library
selection, the stackers) are cross-validated, chosen and fitted on those out-of-fold maps, many more images than
the validation split, and the test split is scored once, at the end, as without a refit. An exported member is a
config's K fold models averaged (FoldAverage; their mean is also its test map), or with --refit-all that config
retrained once on all of train+val (K x M + M trials then). With fold models, a stacker (pixel_logistic,
context_head), fitted on one fold model's maps an image, is applied on test and in the bundle to each fold's models
and its K outputs averaged (combine.PerFold), not to the smoother fold averages; a weighted mean takes the
averages, which gives the same. The report adds one reference row, search_best: the
search's best trial as the search trained it (its own checkpoint, the member a validation fit would use), scored on
test with the same resamples, its gain the chosen candidate's over it; never chosen, never exported.

Everything goes to <experiment>/segtune/ensemble/refit-k<K>-top<M>[-all]/: plan.json, trials/ (Ray's experiment),
probabilities/ (out-of-fold maps on train+val, exported members' maps on test), fold_probabilities/ (each fold
model's test maps), search_best/ (the search's best trial's test maps), report.json/.csv, plots/, combiner.pt and bundle/.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ensembles.build import EnsembleResult, FitInputs, finish_ensemble
from ensembles.fit import LIBRARY
from ensembles.members import Member
from ensembles.probabilities import ProbabilityStore, fold_stores, write_averaged_probabilities
from search.config import SearchConfig
from search.fixed import fixed_trial_params
from search.refit import ALL, RefitConfig, RefitOutcome, RefitPlan, refit_epochs, run_refit
from segtune.data import SegmentationData, carve_folds
from segtune.inspect import duplicate_groups
from segtune.paths import EnsemblePaths, ExperimentPaths
from segtune.tracking import Tracker

PLAN_FILE = "plan.json"


class RefitIncomplete(RuntimeError):
    """No refitted config finished all its trials: there are no out-of-fold maps to fit on."""


@dataclass(frozen=True)
class RefitOptions:
    folds: int
    """K: folds of train+val, each config trained K times, each time without one fold (--refit-folds)."""
    top: int
    """M: how many of the search's best configs are refitted (--refit-top)."""
    refit_all: bool = False
    """Export each config retrained on all of train+val instead of its K fold models averaged (--refit-all)."""

    def __post_init__(self):
        if self.folds < 2:
            raise ValueError(f"option --refit-folds: {self.folds}; use 2 or more folds (5 is nnU-Net's), or leave it "
                             "out for no refit")
        if self.top < 1:
            raise ValueError(f"option --refit-top: {self.top}; refit at least one config")

    @property
    def trials(self) -> int:
        """The compute it costs, in trials of the search's length: K x M, plus M with --refit-all."""
        return self.folds * self.top + (self.top if self.refit_all else 0)


def refit_folder(paths: ExperimentPaths, options: RefitOptions) -> EnsemblePaths:
    """The refit's own ensemble folder, beside the validation-fitted ensemble's files (which it never replaces)."""
    name = f"refit-k{options.folds}-top{options.top}" + ("-all" if options.refit_all else "")
    return EnsemblePaths(paths.ensemble.root / name)


def plan_refit(cfg: SearchConfig, data: SegmentationData, splits: dict, members: list[Member],
               options: RefitOptions) -> RefitPlan:
    """The configs (the M best of `members`, best first) and the K folds of train+val, seeded by the search's split
    seed and grouped as its splits were (near-duplicates in one fold); refused, naming the option, before compute."""
    if len(members) < options.top:
        raise ValueError(f"option --refit-top: {options.top}, but the search has {len(members)} finished trial(s) with "
                         "a checkpoint and distinct configs (near-identical configs are skipped unless --keep-similar); "
                         f"use --refit-top {len(members)} or fewer")
    present = dict(zip(data.names, data.classes_present()))
    try:
        folds = carve_folds(splits["train"] + splits["val"], present, options.folds, cfg.splits_seed,
                            duplicate_groups(data))
    except ValueError as error:
        raise ValueError(f"option --refit-folds: {error} (train+val: {len(splits['train'])} + {len(splits['val'])} "
                         "images)") from None
    fixed = fixed_trial_params(cfg, data, splits).as_dict()
    configs = tuple(RefitConfig(rank, m.trial_id, m.params, refit_epochs(m.epochs, m.params, fixed))
                    for rank, m in enumerate(members[:options.top], 1))
    return RefitPlan(configs, tuple(tuple(fold) for fold in folds), tuple(splits["val"]), options.refit_all)


def tune_path(paths: ExperimentPaths, folder: EnsemblePaths) -> str:
    """Where Ray keeps the refit's trials: trials/ in the refit folder, in the bucket for a remote experiment."""
    if paths.uri is None:
        return str(folder.root / "trials")
    return f"{paths.uri}/{folder.root.relative_to(paths.root).as_posix()}/trials"


def build_refit_ensemble(paths: ExperimentPaths, cfg: SearchConfig, data: SegmentationData, splits: dict,
                         members: list[Member], plan: RefitPlan, fixed: dict[str, dict], options: RefitOptions,
                         candidates: tuple[str, ...], top_k: int, library: bool, folds: int, seed: int,
                         overlap: float, tracker: Tracker | None, register_name: str | None, resamples: int,
                         trainable: Callable | None = None) -> EnsembleResult:
    """Run (or resume) the plan's trials, then fit, choose, score and export the ensemble on out-of-fold maps.
    members: the search's trials, at least the plan's, best first (the first is the report's search_best);
    library: pool every refitted config (--select library); trainable: what each trial runs (None: the search's
    trainable)."""
    folder = refit_folder(paths, options)
    print(f"refit: configs " + ", ".join(f"{c.rank}. {c.trial_id} ({c.epochs} epochs)" for c in plan.configs)
          + f"; {options.folds} folds of {len(plan.train_val)} train+val images ("
          + ", ".join(str(len(f)) for f in plan.folds) + "); "
          + ("each config also on all of train+val, which is exported" if plan.refit_all else
             "the fold models are exported, averaged per config"))
    outcome = run_refit(plan, cfg, data, fixed, tune_path(paths, folder), folder.root / PLAN_FILE, paths,
                        _trial_tracker(paths, tracker), trainable)
    complete = _complete_configs(plan, outcome)
    print(f"refit: {len(outcome.ran)} trial(s) run now in {outcome.seconds:.0f} s, "
          f"{len(outcome.trials) - len(outcome.ran)} kept from an earlier call; {outcome.trial_seconds:.0f} "
          f"trial-seconds in all; {len(complete)} of {len(plan.configs)} configs complete")
    by_id = {m.trial_id: m for m in members}
    checkpoints = {c.trial_id: _exported(outcome, c, plan) for c in complete}
    for config in complete:  # each train+val image from the fold model that did not train on it
        for fold, held_out in enumerate(plan.folds):
            write_averaged_probabilities(config.trial_id, [outcome.of(config.rank)[str(fold)].checkpoint], data,
                                         list(held_out), folder.probabilities)
    ids = [c.trial_id for c in complete]
    test_ids = splits.get("test", [])
    folds_folder = None if plan.refit_all else folder.fold_probabilities
    inputs = FitInputs(
        ProbabilityStore(folder.probabilities, ids), {"top": ids[:top_k], **({LIBRARY: ids} if library else {})},
        {t: by_id[t] for t in ids}, plan.train_val, checkpoints,
        lambda used: [write_averaged_probabilities(t, checkpoints[t], data, test_ids, folder.probabilities,
                                                   folds_folder=folds_folder) for t in used],
        {"on": "out-of-fold", "images": len(plan.train_val), "refit_folds": options.folds, "refit_top": options.top,
         "export": ALL if plan.refit_all else "folds", "trials": len(outcome.trials), "trials_run_now": len(outcome.ran),
         "trial_seconds": round(outcome.trial_seconds), "wall_seconds_now": round(outcome.seconds),
         "configs_left_out": ",".join(
             c.trial_id for c in plan.configs if c not in complete)},
        {c.trial_id: _notes(c, outcome) for c in complete}, reference=members[0],
        test_folds=[] if folds_folder is None else fold_stores(folds_folder, ids, len(plan.folds)))
    return finish_ensemble(folder, paths, cfg, data, test_ids, inputs, candidates, folds, seed, overlap, tracker,
                           register_name, resamples)


def _trial_tracker(paths: ExperimentPaths, tracker: Tracker | None) -> Tracker | None:
    """The tracker the refit trials log to, as children of the search's parent run; None when it has none."""
    if tracker is None or not paths.parent_run.exists():
        return None
    tracker.parent_id = paths.parent_run.read_text().strip()
    return tracker


def _complete_configs(plan: RefitPlan, outcome: RefitOutcome) -> list[RefitConfig]:
    """The configs whose every trial finished; the others are named with their failed or unfinished trials and left
    out, or, when none is complete, the command stops with what to do."""
    complete, problems = [], []
    for config in plan.configs:
        trials = outcome.of(config.rank)
        missing = [f for f in plan.fold_names() if f not in trials or not trials[f].finished]
        if not missing:
            complete.append(config)
        for fold in missing:
            trial = trials.get(fold)
            state = "never started" if trial is None else trial.status.lower() + (f": {trial.error}" if trial.error else "")
            problems.append(f"config {config.rank} ({config.trial_id}) fold {fold}: {state}")
    if problems:
        print("refit: trials that did not finish (their configs are left out of this ensemble):\n  "
              + "\n  ".join(problems) + "\nrun the same command again to retry them; finished trials are kept")
    if not complete:
        raise RefitIncomplete("refit: no config finished all its trials, so no out-of-fold maps could be made; see the "
                           "trials above, then run the same command again (finished trials are kept)")
    return complete


def _exported(outcome: RefitOutcome, config: RefitConfig, plan: RefitPlan) -> list[Path]:
    """The checkpoints an exported member averages: the config's fold models, or its all-data model."""
    trials = outcome.of(config.rank)
    return [trials[ALL].checkpoint] if plan.refit_all else [trials[str(f)].checkpoint for f in range(len(plan.folds))]


def _notes(config: RefitConfig, outcome: RefitOutcome) -> dict:
    """What the report and manifest say of a refitted member: its rank, epochs and Ray trial per fold."""
    return {"refit_rank": config.rank, "refit_epochs": config.epochs,
            "refit_trials": {fold: trial.trial_id for fold, trial in outcome.of(config.rank).items()}}
