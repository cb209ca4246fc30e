"""Drive one search: data -> splits -> Ray Tune (Optuna TPE + ASHA) -> MLflow -> leaderboard.

    from search import load_config, run_search
    outcome = run_search(load_config("my.yaml"))
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import ray
import yaml
from ray import tune
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from segtune import names, storage
from segtune.data import exclude_images, load_dataset, make_splits, write_exclusions
from segtune.inspect import data_fingerprint, duplicate_groups
from segtune.paths import ExperimentPaths, experiment_paths, is_remote
from segtune.tracking import MASK, TRACKING_URI_VARIABLE, MlflowTrialCallback, Tracker, hide_password, runs_page
from search.budget import EpochLog
from search.cluster import check_trial_fits, cluster_nodes, start_ray
from search.config import SearchConfig, load_config, save_config
from search.fixed import cache_pretrained_weights, fixed_trial_params
from search.progress import ProgressLine, format_leaderboard
from search.report import LeaderboardRow, leaderboard_rows, write_reports
from search.searcher import AshaAwareOptunaSearch, build_sampler
from search.study import (RayTrial, check_new_study, new_study, open_storage, reconcile_study, study_exists,
                          study_url)
from search.warm_start import WarmStart, plan_warm_start, save_warm_start, starting_points
from spaces import get_space
from spaces.overrides import validate_space
from trainables import train_segmentation


@dataclass
class SearchOutcome:
    paths: ExperimentPaths
    leaderboard: list[LeaderboardRow]
    parent_run_id: str
    results: tune.ResultGrid
    searcher: AshaAwareOptunaSearch | None

    @property
    def best(self) -> LeaderboardRow | None:
        return self.leaderboard[0] if self.leaderboard else None


def run_search(cfg: SearchConfig, resume: bool = False, trainable: Callable = train_segmentation) -> SearchOutcome:
    """`trainable` is what each trial runs, called by Ray Tune as trainable(config, data=, splits=, fixed=);
    searches use train_segmentation, the driver's tests a dummy that reports made-up scores (tests/fakes.py)."""
    cfg = replace(cfg, name=cfg.name or (latest_experiment(cfg.storage_path) if resume else _timestamped(cfg.space)),
                  tracking_uri=hide_password(cfg.tracking_uri))
    paths = storage.pull(experiment_paths(cfg.storage_path, cfg.name))
    cfg, data, splits, excluded = _prepare_inputs(cfg, paths, resume)
    fixed = fixed_trial_params(cfg, data, splits).as_dict()  # the stages (space check, trainable, MLflow) take dicts
    space = get_space(cfg.space, cfg.space_overrides)
    validate_space(space, cfg.space_overrides, fixed, cfg.grace_period)
    recipes, start_lines = ([], []) if resume else starting_points(cfg, space)
    fingerprint = None if resume else data_fingerprint(data)
    warm = None if resume else plan_warm_start(cfg, paths, space, fingerprint, recipes)
    cache_pretrained_weights(cfg, space, fixed)  # named weights fetched once here, or refused before any compute
    study_storage = study_url(cfg.study_storage, paths)
    if resume:
        open_storage(study_storage)  # a database that cannot be reached is refused before any compute
    else:
        check_new_study(study_storage, cfg.name)
    # Ray first: a cluster that cannot be reached leaves no experiment folder and no MLflow run behind
    start_ray(cfg)
    check_trial_fits(cfg, cluster_nodes())
    _save_inputs(cfg, paths, splits, excluded, fingerprint, warm)
    print(f"data: {len(data.names)} images, classes {list(data.classes)}; "
          f"splits train {len(splits['train'])} / val {len(splits['val'])} / test {len(splits['test'])}", flush=True)
    if len(splits["val"]) < MIN_VAL_IMAGES:
        print(f"note: the validation split holds {len(splits['val'])} image(s): trials are ranked on so few, and "
              f"`segtune ensemble` needs at least 2 (or its --refit-folds); raise val_fraction, or list more images in "
              "splits/val.txt", flush=True)
    if start_lines:
        print("\n".join(start_lines), flush=True)
    if warm:
        print(f"{warm.describe(len(recipes))}\n(saved as {paths.warm_start})", flush=True)
    print(f"Optuna study {cfg.name}, live while the search runs: optuna-dashboard {study_storage}", flush=True)

    tracker = Tracker(cfg.tracking_uri, cfg.mlflow_experiment)
    parent_id = tracker.start_parent(cfg.name, {**cfg.to_dict(), **(warm.mlflow_params() if warm else {})},
                                     paths.parent_run.read_text().strip() if resume and paths.parent_run.exists() else None)
    if parent_id:
        paths.parent_run.write_text(parent_id)
    storage.push(paths)
    for file, written in ((paths.exclusions, excluded), (paths.fingerprint, fingerprint), (paths.warm_start, warm)):
        if written:
            tracker.log_artifact(str(file))
    trial_function = tune.with_resources(tune.with_parameters(trainable, data=data, splits=splits, fixed=fixed),
                                         {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial})
    epoch_log = EpochLog(cfg.epoch_budget)
    try:
        tuner = (_restore_tuner(cfg, paths, trial_function, space, study_storage) if resume
                 else _build_tuner(cfg, paths, trial_function, tracker, fixed, space, epoch_log, study_storage,
                                   recipes + (warm.queued if warm else [])))
        results = tuner.fit()
    except KeyboardInterrupt:
        tracker.close_open_children()
        storage.push(paths)
        tracker.finish_parent("KILLED")
        print(_resume_hint(cfg))
        raise
    _settle_study(cfg, paths, space, study_storage)
    searcher = load_searcher(paths, cfg.max_epochs)
    if not resume:  # a restored Tuner logs to the EpochLog it was built with, not to this one
        epoch_log.write(paths.epochs)
    tracker.close_open_children()
    rows = leaderboard_rows(results, cfg.max_epochs)
    write_reports(paths, rows, results, searcher, data, splits, tracker)
    storage.push(paths)
    # Ray ends fit() quietly on Ctrl-C; trials neither terminated nor errored mean it was interrupted.
    interrupted = results.num_terminated + results.num_errors < len(results)
    tracker.finish_parent("KILLED" if interrupted else "FINISHED")
    _print_summary(cfg, paths, rows, tracker.experiment_id)
    if tracker.failed:
        print(f"MLflow at {cfg.tracking_uri} could not be reached during the search; everything is in {paths.tune_path}. "
              f"Log it once the store is back: segtune mlflow {paths.tune_path} --tracking-uri {cfg.tracking_uri}"
              + (f" (the password masked as {MASK} is read from {TRACKING_URI_VARIABLE}, the full URI)"
                 if MASK in cfg.tracking_uri else ""))
    if interrupted:
        print(_resume_hint(cfg))
    return SearchOutcome(paths, rows, parent_id, results, searcher)


MIN_VAL_IMAGES = 3
"""Fewer validation images than this: the search says so at its start (it still runs)."""


def search_inputs(cfg: SearchConfig, exclusions=None):
    """(data, splits, excluded) of a new search of cfg: the images read, those in `exclusions` (default
    cfg.exclude_file) left out, and the seeded splits. Benchmarks (bench/) carve their data with it too."""
    data, excluded = _read_data(cfg, cfg.exclude_file if exclusions is None else exclusions)
    splits = make_splits(data, cfg.val_fraction, cfg.test_fraction, cfg.splits_seed, groups=duplicate_groups(data))
    return data, splits, excluded


def _read_data(cfg: SearchConfig, exclusions):
    """The images cfg reads, less those listed in `exclusions` (a file or None), and the excluded list."""
    data = load_dataset(cfg.data, classes=cfg.classes, colour_map=cfg.colour_map,
                        ignore_index=cfg.ignore_index, resize=cfg.resize)
    return exclude_images(data, exclusions)


def _prepare_inputs(cfg: SearchConfig, paths: ExperimentPaths, resume: bool):
    """Data, exclusions and splits, all checked before any compute; a resumed search reuses its own."""
    if not resume:
        if paths.config.exists():
            raise FileExistsError(f"experiment {paths.root} exists; pass --resume to continue it or choose another --name")
        return (cfg, *search_inputs(cfg))
    cfg, splits = _resume_inputs(paths)
    # a resumed search reads the list it saved, not the (maybe since edited) original
    data, excluded = _read_data(cfg, paths.exclusions if paths.exclusions.exists() else cfg.exclude_file)
    return cfg, data, splits, excluded


def _save_inputs(cfg: SearchConfig, paths: ExperimentPaths, splits, excluded, fingerprint: dict | None,
                 warm: WarmStart | None) -> None:
    """Every experiment folder holds the config, splits and exclusions that made it, its data's fingerprint and
    the warm-start configs it queued (a resumed search keeps those it saved)."""
    paths.create()
    save_config(cfg, paths.config)
    paths.splits.write_text(json.dumps(splits, indent=1))
    if fingerprint is not None:
        paths.fingerprint.write_text(json.dumps(fingerprint, indent=1))
    if warm is not None:
        save_warm_start(warm, paths.warm_start)
    if excluded:
        write_exclusions(paths.exclusions, excluded, f"left out of every split; from exclude_file {cfg.exclude_file}")
        print(f"excluded {len(excluded)} image(s) listed in {cfg.exclude_file} (saved as {paths.exclusions})")


def _resume_hint(cfg: SearchConfig) -> str:
    return f"search interrupted; continue with: python search/run.py --resume --name {cfg.name} --storage-path {cfg.storage_path}"


def _timestamped(space: str) -> str:
    return f"segtune-{space}-{time.strftime('%Y%m%d-%H%M%S')}"


def latest_experiment(storage_path: str) -> str:
    """The most recently started experiment under storage_path, for a bare --resume."""
    if is_remote(storage_path):
        raise ValueError(f"--resume with storage_path {storage_path}: pass --name, the interrupted search's name")
    root = experiment_paths(storage_path, "_").root.parent
    found = sorted(root.glob("*/segtune/search_config.yaml"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"--resume: no segtune experiment under {root}; pass --storage-path and --name")
    return found[-1].parent.parent.name


def _build_tuner(cfg, paths, trainable, tracker, fixed, space, epoch_log: EpochLog, study_storage: str,
                 points: list[dict]) -> tune.Tuner:
    """`points`: the configs tried first, in order (the preset's recipes, then the warm-start configs)."""
    # metric and mode go to the searcher and the scheduler: Ray does not pass TuneConfig's on
    # to a searcher built with a define-by-run space.
    objective = {"metric": names.OBJECTIVE, "mode": names.OBJECTIVE_MODE}
    storage = open_storage(study_storage)
    new_study(storage, cfg.name)  # the searcher works on it (and queues the points in it)
    searcher = AshaAwareOptunaSearch(space=space, sampler=build_sampler(cfg), storage=storage, study_name=cfg.name,
                                     points_to_evaluate=points or None, max_epochs=cfg.max_epochs, **objective)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher,
                                    scheduler=build_scheduler(cfg), num_samples=cfg.num_samples,
                                    time_budget_s=cfg.time_budget_s,
                                    max_concurrent_trials=cfg.max_concurrent_trials, reuse_actors=True,
                                    trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}"),
        run_config=tune.RunConfig(
            name=cfg.name, storage_path=paths.tune_path.rpartition("/")[0], verbose=0, stop=epoch_log,
            callbacks=[MlflowTrialCallback(tracker, fixed, cfg.max_epochs), ProgressLine(cfg.num_samples, cfg.max_epochs)],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2, checkpoint_score_attribute=names.OBJECTIVE,
                                                    checkpoint_score_order=names.OBJECTIVE_MODE),
            failure_config=tune.FailureConfig(max_failures=cfg.max_failures)))


def build_scheduler(cfg: SearchConfig) -> TrialScheduler:
    """The Ray Tune scheduler cfg.scheduler names. hyperband is Ray's asynchronous HyperBand (ASHA over several
    brackets). Ray's synchronous HyperBandScheduler halves a bracket among its live trials, keeping the top
    n/reduction_factor of the bracket's planned size n: under max_concurrent_trials (small, for TPE) it keeps
    them all and stops none. Its HyperBandForBOHB variant needs Ray's BOHB searcher, not Optuna."""
    if cfg.scheduler == "fifo":
        return FIFOScheduler()
    if cfg.scheduler == "hyperband":
        np.random.seed(cfg.seed)  # Ray draws each trial's bracket from NumPy's global generator: same seed, same draws
    return AsyncHyperBandScheduler(time_attr="training_iteration", metric=names.OBJECTIVE, mode=names.OBJECTIVE_MODE,
                                   max_t=cfg.max_epochs, grace_period=cfg.grace_period,
                                   reduction_factor=cfg.reduction_factor,
                                   brackets=cfg.hyperband_brackets if cfg.scheduler == "hyperband" else 1)


def _restore_tuner(cfg: SearchConfig, paths: ExperimentPaths, trainable, space, study_storage: str) -> tune.Tuner:
    """Ray's saved experiment, its searcher attached to the study, which is first made to hold exactly the trials of
    Ray's saved state (search/study.py says why Ray's state wins)."""
    if not tune.Tuner.can_restore(paths.tune_path):
        raise FileNotFoundError(f"--resume: no Ray Tune experiment state in {paths.tune_path}")
    tuner = tune.Tuner.restore(paths.tune_path, trainable=trainable, resume_unfinished=True, resume_errored=False)
    storage = open_storage(study_storage)
    reconciled = reconcile_study(storage, cfg.name, _saved_trials(paths), space, cfg.max_epochs)
    if reconciled.changed:
        print(f"study {cfg.name} in {study_storage}, made to agree with Ray's saved state: {reconciled.describe()}")
    # the searcher Ray restores (from tuner.pkl, then its saved state) lives in the Tuner's config; Ray is pinned
    tuner._local_tuner._tune_config.search_alg.attach(storage)
    return tuner


def _settle_study(cfg: SearchConfig, paths: ExperimentPaths, space, study_storage: str) -> None:
    """The study as Ray's final state has the trials: an epoch_budget or time_budget_s stops the running trials
    without telling the searcher, which left them RUNNING in the study (and in optuna-dashboard) for good."""
    reconciled = reconcile_study(open_storage(study_storage), cfg.name, _saved_trials(paths), space, cfg.max_epochs)
    if reconciled.changed:
        print(f"study {cfg.name}: {reconciled.describe()}", flush=True)


def _saved_trials(paths: ExperimentPaths) -> list[RayTrial]:
    """The trials of the experiment state Ray saved last, the one a resumed Tuner starts from."""
    analysis = tune.ExperimentAnalysis(paths.tune_path)
    return [RayTrial(t.trial_id, t.status, t.config, t.last_result or {}) for t in analysis.trials]


def _resume_inputs(paths: ExperimentPaths):
    """A resumed search uses the config and splits it was started with, never new ones."""
    if not paths.config.exists():
        raise FileNotFoundError(f"--resume: {paths.config} not found; is --name/--storage-path the interrupted search's?")
    return load_config(str(paths.config)), json.loads(paths.splits.read_text())


def load_searcher(paths: ExperimentPaths, max_epochs: int) -> AshaAwareOptunaSearch | None:
    """The searcher as Ray saved it in the experiment folder, attached to its study (study_storage in the saved
    config; a search saved before studies had a database holds its study in the saved state)."""
    searcher = AshaAwareOptunaSearch(max_epochs=max_epochs)
    try:
        searcher.restore_from_dir(str(storage.pull_tune_state(paths)))
    except (FileNotFoundError, RuntimeError):
        return None
    url = study_url(_saved_study_storage(paths), paths)
    if study_exists(url, searcher.study_name):
        searcher.attach(open_storage(url))
    return searcher


def _saved_study_storage(paths: ExperimentPaths) -> str | None:
    """study_storage as the experiment's config saved it: the one option read, so a config whose other options no
    longer check out (a space since removed) still finds its study; null in experiments from before it existed."""
    saved = yaml.safe_load(paths.config.read_text()) if paths.config.exists() else {}
    return saved.get("study_storage")


def _print_summary(cfg: SearchConfig, paths: ExperimentPaths, rows: list[LeaderboardRow],
                   experiment_id: str | None) -> None:
    print("\n" + format_leaderboard(rows))
    if rows and rows[0].checkpoint:
        best = rows[0]
        print(f"\nbest trial {best.trial_id}: val_miou {best.val_miou:.4f} after {best.epochs} epoch(s)")
        print(f"best config: {json.dumps(best.params)}")
        print(f"best checkpoint: {best.checkpoint}/{names.CHECKPOINT_FILE}")
    print(f"experiment folder: {paths.tune_path}  (leaderboard, plots, config and splits in {paths.segtune})")
    uri = cfg.tracking_uri
    server = uri if uri.startswith("http") else "http://127.0.0.1:5000"
    if not uri.startswith("http"):
        print(f"browse in MLflow: mlflow ui --backend-store-uri {uri}")
    print(f"the trials in MLflow: {runs_page(server, experiment_id)}" if experiment_id else f"MLflow: {server}")
