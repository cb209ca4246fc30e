"""What Ray, Optuna and MLflow cost per trial: N tiny trials through the real driver, five ways, interleaved.

    python bench/tiny_trials.py                     # 100 trials of 2 epochs, each arm 3 times
    python bench/tiny_trials.py --trials 20 --repeats 1 --space smoke --arms tpe,tpe+memory

Every arm runs N trials of tests/fakes.py's dummy trainable (no model: a made-up score and a small checkpoint
per epoch), so what is left is the machinery:

    tpe+mlflow     search.run_search as users run it: Optuna TPE, its study in SQLite, MLflow to SQLite
    tpe            the same with MLflow switched off (a tracker that does nothing)
    tpe+memory     the same with the Optuna study in memory instead of its database (study_storage)
    random+memory  Optuna's random sampler instead of TPE, study in memory, MLflow off
    ray            bare Ray Tune: the same trials, reuse_actors, no searcher, no callbacks, no segtune

Every search arm uses the FIFO scheduler (each trial runs all its epochs, as in the bare arm) and the same
max_concurrent_trials. The arms take turns (one of each per repeat), so a background load hits them alike.
The time is that of Tuner.fit (the trials); run_search's fixed costs (data, reports, plots) come on top and are
shown as the total. Per trial: MLflow = tpe+mlflow - tpe, the study database = tpe - tpe+memory, TPE's proposals =
tpe+memory - random+memory, the rest of segtune's driver (OptunaSearch, callbacks, checkpoint bookkeeping) =
random+memory - ray, Ray = ray; each a median [min, max] of per-repeat differences.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # fakes.py: the dummy trainable the driver's tests use

from ray import tune  # noqa: E402

import optuna  # noqa: E402

import search.driver  # noqa: E402
import search.report  # noqa: E402
from fakes import dummy_trainable  # noqa: E402
from search import load_config  # noqa: E402
from search.cluster import start_ray  # noqa: E402

ARMS = ("tpe+mlflow", "tpe", "tpe+memory", "random+memory", "ray")
COSTS = {"MLflow": ("tpe+mlflow", "tpe"), "study database (vs memory)": ("tpe", "tpe+memory"),
         "TPE (vs random)": ("tpe+memory", "random+memory"), "rest of the driver (vs Tune)": ("random+memory", "ray")}
"""What each cost is: the arm with it minus the arm without."""


class NullTracker:
    """MLflow off: every Tracker method does nothing."""
    failed = False

    def __init__(self, *args, **kwargs):
        """Takes Tracker's arguments and opens no store."""

    def __getattr__(self, name):
        return _nothing


def _nothing(*args, **kwargs):
    return None


@contextlib.contextmanager
def timed_fit(record: list):
    """Tuner.fit, timed: the trials alone, without the driver's fixed costs before and after."""
    original = tune.Tuner.fit

    def fit(self):
        started = time.perf_counter()
        try:
            return original(self)
        finally:
            record.append(time.perf_counter() - started)

    with mock.patch.object(tune.Tuner, "fit", fit):
        yield


def run_arm(arm: str, args, folder: Path) -> tuple[float, float, int]:
    """(seconds in Tuner.fit, seconds in all, trials completed) of one arm's N trials."""
    fit_seconds: list[float] = []
    started = time.perf_counter()
    with (timed_fit(fit_seconds), open(folder / f"{arm}.log", "w") as log, contextlib.redirect_stdout(log),
          contextlib.redirect_stderr(log)):
        completed = bare_tune(args, folder) if arm == "ray" else search_arm(arm, args, folder)
    return fit_seconds[0], time.perf_counter() - started, completed


def search_arm(arm: str, args, folder: Path) -> int:
    cfg = load_config(None, {"space": args.space, "num_samples": args.trials, "max_epochs": args.epochs,
                             "grace_period": 1, "scheduler": "fifo", "sampler": arm.split("+")[0],
                             "max_concurrent_trials": args.concurrent, "name": arm, "storage_path": str(folder),
                             "tracking_uri": f"sqlite:///{folder}/mlflow.db"})
    with contextlib.ExitStack() as stack:
        # the dummy's checkpoints hold no model to draw predictions with
        stack.enter_context(mock.patch.object(search.report, "plot_predictions", lambda *a: None))
        if "mlflow" not in arm:
            stack.enter_context(mock.patch.object(search.driver, "Tracker", NullTracker))
        if "memory" in arm:  # the driver opens the study's database twice (the search, the report): one memory store
            study = optuna.storages.InMemoryStorage()
            stack.enter_context(mock.patch.object(search.driver, "open_storage", lambda url: study))
            stack.enter_context(mock.patch.object(search.driver, "study_exists", lambda url, name: True))
        outcome = search.driver.run_search(cfg, trainable=dummy_trainable())
    return sum(1 for row in outcome.leaderboard if row.outcome == "completed")


def bare_tune(args, folder: Path) -> int:
    """The same trials on Ray Tune alone: parameters drawn by Ray's own generator."""
    space = {"encoder": "tu-mobilenetv3_small_050", "loss": tune.choice(["cross_entropy", "dice"]),
             "lr": tune.loguniform(1e-4, 1e-1)}
    trainable = tune.with_resources(tune.with_parameters(dummy_trainable(), data=None, splits=None,
                                                         fixed={"max_epochs": args.epochs}), {"cpu": 1})
    results = tune.Tuner(trainable, param_space=space,
                         tune_config=tune.TuneConfig(num_samples=args.trials, max_concurrent_trials=args.concurrent,
                                                     reuse_actors=True),
                         run_config=tune.RunConfig(name="ray", storage_path=str(folder), verbose=0)).fit()
    return len(results) - results.num_errors


def spread(values: list[float], scale: float = 1.0) -> str:
    scaled = [v * scale for v in values]
    return f"{statistics.median(scaled):.3f} [{min(scaled):.3f}, {max(scaled):.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=2, help="epochs (reports with a checkpoint) per trial")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrent", type=int, default=2, help="max_concurrent_trials (the search default)")
    parser.add_argument("--space", default="default", help="search space of the search arms (default: default)")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"some of {','.join(ARMS)} (default all)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/segtune_tiny_trials"))
    args = parser.parse_args()
    arms = tuple(args.arms.split(","))
    if unknown := sorted(set(arms) - set(ARMS)):
        parser.error(f"--arms: {unknown} not among {list(ARMS)}")
    start_ray(load_config(None, {}))  # one local Ray for every arm, as a search starts it
    fit: dict[str, list[float]] = {arm: [] for arm in arms}
    total: dict[str, list[float]] = {arm: [] for arm in arms}
    for repeat in range(args.repeats):
        for arm in arms[repeat % len(arms):] + arms[:repeat % len(arms)]:  # each arm leads once in a while
            folder = args.out / f"repeat{repeat}" / arm.replace("+", "_")
            folder.mkdir(parents=True, exist_ok=False)
            fit_s, total_s, completed = run_arm(arm, args, folder)
            fit[arm].append(fit_s)
            total[arm].append(total_s)
            short = f" ({completed} of {args.trials} trials completed: see {folder})" if completed < args.trials else ""
            print(f"repeat {repeat} {arm:<13} fit {fit_s:7.1f} s, all {total_s:7.1f} s{short}", flush=True)
    per_trial = 1 / args.trials
    print(f"\n{args.trials} trials x {args.epochs} epochs, {args.concurrent} at a time, space {args.space}, "
          f"{args.repeats} repeats (median [min, max])")
    print(f"{'arm':<13} {'fit s':>24} {'s per trial':>24} {'all s':>24}")
    for arm in arms:
        print(f"{arm:<13} {spread(fit[arm]):>24} {spread(fit[arm], per_trial):>24} {spread(total[arm]):>24}")
    print("\ncost per trial, s (paired by repeat):")
    for name, (with_it, without) in COSTS.items():
        if with_it in fit and without in fit:
            print(f"  {name:<30} {spread([a - b for a, b in zip(fit[with_it], fit[without])], per_trial)}")
    if "ray" in fit:
        print(f"  {'Ray Tune (bare)':<30} {spread(fit['ray'], per_trial)}")


if __name__ == "__main__":
    main()
