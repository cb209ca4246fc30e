"""Stack the best trials of a finished search, prove the gain on untouched images, export one bundle.

    segtune ensemble EXPERIMENT_DIR                # or the id of the search's MLflow parent run
    segtune ensemble EXPERIMENT_DIR --top-k 3 --folds 4 --register-name crop-weed
    segtune ensemble EXPERIMENT_DIR --select library   # also greedy selection over every trial (Caruana)
    segtune ensemble EXPERIMENT_DIR --refit-folds 5 --refit-top 3   # fitted out-of-fold on train+val (nnU-Net)

Every test mIoU comes with a 95 % paired-bootstrap interval over the test images, and so does each
candidate's gain over the best single model.
Writes <experiment>/segtune/ensemble/: members' float16 probabilities on val and test, report.json/.csv,
plots, and bundle/ (TorchScript, ONNX, manifest) for `segtune predict`; logs an "ensemble" child run
under the search's parent run and registers the chosen ensemble as an MLflow model.
With --refit-folds K the M best configs (--refit-top) are first retrained on K folds of train+val as Ray Tune
trials (K x M of them, resumable: run the same command again), the candidates are fitted on their out-of-fold
probabilities, and everything goes to ensemble/refit-k<K>-top<M>[-all]/ (ensembles/refit.py). Its report adds a
reference row, search_best (the search's best trial as the search trained it, never chosen or exported), and a line
saying whether the refit's choice is below it, above it, or cannot be told apart on the test split.
"""

from __future__ import annotations

import argparse
import sys

from ensembles.bootstrap import RESAMPLES
from ensembles.fit import CANDIDATES, LIBRARY, ORDER
from ensembles.members import library_members, resolve_experiment, top_members
from search.experiment import load_experiment_data
from segtune import storage
from segtune.cli import EXIT_FAILED, set_quiet_defaults
from segtune.names import DEFAULT_TRACKING_URI
from segtune.tiling import DEFAULT_OVERLAP
from segtune.tracking import Tracker


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segtune ensemble", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="experiment folder (or s3:// URI) of a search, or its MLflow parent run id")
    parser.add_argument("--top-k", type=int, default=5, help="members: the k best trials by val mIoU (default 5)")
    parser.add_argument("--select", choices=("top-k", LIBRARY), default="top-k",
                        help="top-k: candidates over the top k only (default); library: also the library candidate, "
                             "greedy selection with replacement over every trial that kept its validation maps")
    parser.add_argument("--keep-similar", action="store_true",
                        help="keep near-identical configs (by default a config within 25%% of a better one is skipped)")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds over validation images (default 5)")
    parser.add_argument("--candidates", default=None,
                        help=f"comma-separated subset of {','.join(ORDER)} (default: all; library with --select library)")
    parser.add_argument("--bootstrap", type=int, default=RESAMPLES,
                        help=f"resamples of the test images for the 95%% intervals (default {RESAMPLES})")
    parser.add_argument("--overlap", type=float, default=DEFAULT_OVERLAP,
                        help=f"tile overlap used by `segtune predict` (default {DEFAULT_OVERLAP})")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default: the search's own; also used to resolve a run id)")
    parser.add_argument("--register-name", default=None,
                        help="MLflow registered model name (default segtune-<search name>, or the search name if it starts so)")
    parser.add_argument("--no-register", action="store_true", help="log the MLflow model but do not register it")
    parser.add_argument("--refit-folds", type=int, default=0, metavar="K",
                        help="retrain the --refit-top configs on K folds of train+val (Ray Tune trials) and fit the "
                             "candidates on their out-of-fold probabilities (default 0: fit on validation maps)")
    parser.add_argument("--refit-top", type=int, default=None, metavar="M",
                        help="with --refit-folds: refit the M best configs (default: --top-k); K x M trials")
    parser.add_argument("--refit-all", action="store_true",
                        help="with --refit-folds: export each config retrained once on all of train+val (M more "
                             "trials) instead of its K fold models averaged")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    set_quiet_defaults()
    args = build_parser().parse_args(argv)
    default = CANDIDATES + ((LIBRARY,) if args.select == LIBRARY else ())
    candidates = tuple(c.strip() for c in (args.candidates or ",".join(default)).split(",") if c.strip())
    try:
        _check_options(args, candidates)
        refit = _refit_options(args)
        paths = resolve_experiment(args.experiment, args.tracking_uri or DEFAULT_TRACKING_URI)
        cfg, data, splits = load_experiment_data(paths)
        if not refit and len(splits.get("val", [])) < 2:
            raise ValueError(f"the search's validation split has {len(splits.get('val', []))} image(s), and choosing an "
                             "ensemble cross-validates it on at least 2; use --refit-folds K (fits out-of-fold on "
                             "train+val), or search again with a larger val_fraction")
        members = top_members(paths, refit.top if refit else args.top_k, cfg.max_epochs,
                              skip_similar=not args.keep_similar)
        library = library_members(paths, cfg.max_epochs) if args.select == LIBRARY and not refit else None
        planned = _planned_refit(paths, cfg, data, splits, members, refit) if refit else None
    except (ValueError, FileNotFoundError, ConnectionError) as error:
        raise SystemExit(f"segtune ensemble: {error}") from None
    tracker = Tracker(args.tracking_uri or cfg.tracking_uri, cfg.mlflow_experiment)
    register_name = None if args.no_register else (args.register_name or _default_name(cfg.name))
    if refit:
        result = _refit_ensemble(args, paths, cfg, data, splits, members, planned, refit, candidates, tracker,
                                 register_name)
        if result is None:
            return EXIT_FAILED
    else:
        from ensembles.build import build_ensemble  # torch, smp and onnx load only once the inputs are known good
        result = build_ensemble(paths, cfg, data, splits, members, candidates, folds=args.folds, seed=args.seed,
                                overlap=args.overlap, tracker=tracker, register_name=register_name, library=library,
                                resamples=args.bootstrap)
    storage.push(paths)
    if paths.uri:
        print(f"\nensemble saved with the experiment: {paths.uri}/{paths.ensemble.root.relative_to(paths.root)}")
    print(f"\nbundle: {result.bundle}\npredict: segtune predict {result.bundle} IMAGES_DIR OUTPUT_DIR")
    return 0


def _check_options(args, candidates: tuple[str, ...]) -> None:
    """Refuse bad options before any experiment is read, each naming its flag."""
    unknown = [c for c in candidates if c not in ORDER]
    if unknown or not candidates:
        raise ValueError(f"option --candidates: unknown {unknown}; choose from {', '.join(ORDER)}")
    if LIBRARY in candidates and args.select != LIBRARY:
        raise ValueError(f"option --candidates: {LIBRARY} needs --select {LIBRARY}")
    if not 0 <= args.overlap < 1:
        raise ValueError(f"option --overlap: {args.overlap}; use a fraction in [0, 1)")
    if args.bootstrap < 100:
        raise ValueError(f"option --bootstrap: {args.bootstrap} resamples; use at least 100 (1000 or more for "
                         "intervals whose ends do not move with the seed)")


def _refit_options(args):
    """RefitOptions for --refit-folds (None without it); the refit flags alone are refused, naming the one given."""
    if not args.refit_folds:
        given = [flag for flag, value in (("--refit-top", args.refit_top is not None), ("--refit-all", args.refit_all))
                 if value]
        if given:
            raise ValueError(f"option {given[0]}: needs --refit-folds K (the folds of train+val to refit on)")
        return None
    from ensembles.refit import RefitOptions
    return RefitOptions(args.refit_folds, args.top_k if args.refit_top is None else args.refit_top, args.refit_all)


def _planned_refit(paths, cfg, data, splits, members, refit):
    """The refit's plan and every trial's fixed parameters, checked before Ray starts: the folds, the configs, each
    trial's TrialConfig, and that a refit folder from an earlier call was started for the same plan."""
    from ensembles.refit import PLAN_FILE, plan_refit, refit_folder
    from search.refit import check_refit, check_saved_plan
    plan = plan_refit(cfg, data, splits, members, refit)
    fixed = check_refit(plan, cfg, data)
    check_saved_plan(plan, refit_folder(paths, refit).root / PLAN_FILE)
    return plan, fixed


def _refit_ensemble(args, paths, cfg, data, splits, members, planned, refit, candidates, tracker, register_name):
    """The ensemble fitted on out-of-fold maps; None (after saying why) when no config finished all its trials."""
    from ensembles.refit import RefitIncomplete, build_refit_ensemble
    print(f"refit: {refit.trials} trials of the search's own length ({refit.folds} folds x {refit.top} configs"
          + (f" + {refit.top} on all of train+val)" if refit.refit_all else ")"))
    plan, fixed = planned
    try:
        return build_refit_ensemble(paths, cfg, data, splits, members, plan, fixed, refit, candidates, args.top_k,
                                    args.select == LIBRARY, args.folds, args.seed, args.overlap, tracker,
                                    register_name, args.bootstrap)
    except RefitIncomplete as error:
        print(f"segtune ensemble: {error}", file=sys.stderr)
        return None


def _default_name(search_name: str) -> str:
    """segtune-<search> (searches named by segtune already start with "segtune-")."""
    return search_name if search_name.startswith("segtune") else f"segtune-{search_name}"


if __name__ == "__main__":
    from segtune.cli import run_command  # exit 2 for a refusal, as `segtune ...`
    raise SystemExit(run_command(main))
