"""Compare search strategies at matched compute: the same data, the same splits, the same epoch budget.

    python bench/compare_searchers.py spaces/configs/terrain.yaml --strategies tpe+asha,random+fifo \
        --seeds 0,1,2 --budget-epochs 120 --out bench_results/terrain

Each strategy (sampler+scheduler: tpe, random or gp with asha, hyperband or fifo) runs as an ordinary
segtune search of CONFIG with `epoch_budget` set to --budget-epochs: the search stops once its trials
have run that many epochs in all. Seeds change the sampler and the trials, never the splits (every run
carves them with CONFIG's split_seed, or its seed). Two baselines run the same budget as one trial of
--budget-epochs epochs: `default`, one sensible model (spaces.DEFAULT_MODEL, as far as the space has the
parameters), and `recipe`, the preset's starting recipe (spaces' get_recipes; skipped when it has none).

Written as it goes, under --out:
    results.csv  strategy, seed, trial, epoch, cumulative_epochs, best_val_miou, val_miou, train_scale,
                 cumulative_seconds, cumulative_pixels: one row per epoch received, best_val_miou the best of
                 any epoch so far, val_miou this epoch's, then the compute spent so far in trial-seconds (each
                 epoch's wall time in its trial: training, validation, checkpoint) and in pixels of training
                 crops through the network (machine-independent; an epoch at progressive_scale 0.5 counts a
                 quarter, where the epoch count counts it whole)
    runs.csv     one row per finished run: its final best val mIoU, its final pick and that pick's test
                 mIoU, scored once as bench/score_checkpoint.py does; a run listed here is skipped when
                 the command is run again (so a comparison can span sessions); a half-done one is redone
    summary.md   per strategy: median and range over seeds of the final best val mIoU and of the test
                 mIoU, and the headline: epochs the median anytime curve needs to reach the reference's
                 (--reference, default random+fifo) median final best, as a fraction of the budget. Then
                 compute and ranking: trial-seconds and pixels each run spent (median over seeds) and those
                 the median curve needed to reach that best (a fraction of the reference's whole run), and
                 how well the first rung ranks trials: Kendall's tau between the trials' val mIoU at epoch
                 grace_period and at their last epoch, over the trials that ran past it (median over seeds)
    anytime.png  best val mIoU so far against epochs spent: median line and min-max band per strategy

Progressive resolution against epochs-only ASHA (issue 12): compute to reach ASHA's final best, and the
first rung's ranking with every trial run to the end (fifo):

    python bench/compare_searchers.py spaces/configs/crop_weed.yaml --set '{max_epochs: 8}' --baselines '' \
        --strategies tpe+asha,tpe+asha:progressive_resolution=true --reference tpe+asha \
        --seeds 0,1,2 --budget-epochs 32 --out bench_results/progressive_asha
    python bench/compare_searchers.py spaces/configs/crop_weed.yaml --set '{max_epochs: 8}' --baselines '' \
        --strategies random+fifo,random+fifo:progressive_resolution=true \
        --seeds 0,1,2 --budget-epochs 32 --out bench_results/progressive_ranking
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REFERENCE = "random+fifo"
"""The strategy whose median final best the headline ratio is measured against."""
BASELINES = ("default", "recipe")
RESULT_COLUMNS = ("strategy", "seed", "trial", "epoch", "cumulative_epochs", "best_val_miou", "val_miou", "train_scale",
                  "cumulative_seconds", "cumulative_pixels")
RUN_COLUMNS = ("strategy", "seed", "experiment", "trials", "epochs", "final_best_val_miou", "pick_trial",
               "pick_val_miou", "test_miou", "wall_s", "note")


# --------------------------------------------------------------------------- pure functions of the rows

def anytime_rows(strategy: str, seed: int, epoch_log: list[dict]) -> list[dict]:
    """results.csv rows from a search's epochs.csv rows (in the order received): trials numbered by first epoch;
    trial-seconds and pixels summed as they come (None from the first epoch a log lacks them: an older log)."""
    trials, best, rows, seconds, pixels = {}, float("-inf"), [], 0.0, 0
    for spent, entry in enumerate(epoch_log, start=1):
        trial = trials.setdefault(entry["trial_id"], len(trials))
        if entry["val_miou"] is not None:
            best = max(best, entry["val_miou"])
        seconds, pixels = _plus(seconds, entry.get("seconds")), _plus(pixels, entry.get("train_pixels"))
        rows.append({"strategy": strategy, "seed": seed, "trial": trial, "epoch": entry["epoch"],
                     "cumulative_epochs": spent, "best_val_miou": best, "val_miou": entry["val_miou"],
                     "train_scale": entry.get("train_scale"), "cumulative_seconds": seconds,
                     "cumulative_pixels": pixels})
    return rows


def _plus(total, value):
    return None if total is None or value is None else total + value


def best_at(rows: list[dict], epochs: int) -> float:
    """One run's best val mIoU once `epochs` epochs were spent (-inf before its first score)."""
    spent = [r["best_val_miou"] for r in rows if r["cumulative_epochs"] <= epochs]
    return spent[-1] if spent else float("-inf")


def by_run(rows: list[dict]) -> dict[str, dict[int, list[dict]]]:
    """strategy -> seed -> its rows in order of cumulative epochs."""
    runs: dict[str, dict[int, list[dict]]] = {}
    for row in rows:
        runs.setdefault(row["strategy"], {}).setdefault(int(row["seed"]), []).append(row)
    for seeds in runs.values():
        for seed_rows in seeds.values():
            seed_rows.sort(key=lambda r: r["cumulative_epochs"])
    return runs


def anytime_bands(rows: list[dict], budget: int) -> dict[str, tuple[list[int], list[float], list[float], list[float]]]:
    """strategy -> (epochs 1..budget, median, min, max over seeds of the best val mIoU so far)."""
    bands = {}
    for strategy, seeds in by_run(rows).items():
        epochs = list(range(1, budget + 1))
        values = [[best_at(seed_rows, e) for seed_rows in seeds.values()] for e in epochs]
        bands[strategy] = (epochs, [statistics.median(v) for v in values], [min(v) for v in values],
                           [max(v) for v in values])
    return bands


def epochs_to_reach(rows: list[dict], target: float, budget: int) -> int | None:
    """The first epoch count at which the median over seeds of the best so far reaches target; None: never."""
    epochs, median, _, _ = anytime_bands(rows, budget)[rows[0]["strategy"]]
    return next((e for e, value in zip(epochs, median) if value >= target), None)


def compute_to_reach(seeds: list[list[dict]], target: float, column: str) -> float | None:
    """The least compute (`column`: cumulative_seconds or cumulative_pixels) at which the median over seeds of the
    best val mIoU so far reaches target, as epochs_to_reach does for epochs; None if it never does or a run's rows
    hold no compute (an older results.csv)."""
    if any(row.get(column) is None for seed_rows in seeds for row in seed_rows):
        return None
    for spent in sorted({row[column] for seed_rows in seeds for row in seed_rows}):
        bests = [max((r["best_val_miou"] for r in seed_rows if r[column] <= spent), default=-math.inf)
                 for seed_rows in seeds]
        if statistics.median(bests) >= target:
            return spent
    return None


def rung_ranking(seed_rows: list[dict], rung: int) -> tuple[float | None, int]:
    """Kendall's tau-b between the trials' val mIoU at epoch `rung` (ASHA's first rung, grace_period) and at their
    last epoch, over one run's trials that went past the rung; and how many those were (tau None below 3)."""
    from scipy.stats import kendalltau
    at_rung, last = {}, {}
    for row in seed_rows:  # in the order received: a trial's later epochs overwrite its `last`
        if row["val_miou"] is None or row["epoch"] is None:
            continue
        if row["epoch"] == rung:
            at_rung[row["trial"]] = row["val_miou"]
        elif row["epoch"] > rung:
            last[row["trial"]] = row["val_miou"]
    trials = [t for t in last if t in at_rung]
    if len(trials) < 3:
        return None, len(trials)
    tau = kendalltau([at_rung[t] for t in trials], [last[t] for t in trials]).statistic
    return (None if math.isnan(tau) else float(tau)), len(trials)


def _median(values: list) -> float | None:
    """Median of values; None if one is missing."""
    return None if not values or any(v is None for v in values) else statistics.median(values)


def compute_summary(seeds: dict[int, list[dict]], target: float | None, rung: int | None) -> dict:
    """One strategy's trial-seconds and pixels per run (median over seeds) and to reach target (compute_to_reach),
    and its first rung's Kendall tau (median over seeds) with the trials it was computed over."""
    summary = {}
    for column, name in (("cumulative_seconds", "seconds"), ("cumulative_pixels", "pixels")):
        summary[f"{name}_total"] = _median([seed_rows[-1].get(column) for seed_rows in seeds.values()])
        summary[f"{name}_to_reference"] = None if target is None else compute_to_reach(list(seeds.values()), target,
                                                                                       column)
    rankings = [rung_ranking(seed_rows, rung) for seed_rows in seeds.values()] if rung else []
    taus = [tau for tau, _ in rankings if tau is not None]
    summary["rung_tau"] = statistics.median(taus) if taus else None
    summary["rung_trials"] = sum(count for _, count in rankings)
    return summary


def summarise(rows: list[dict], runs: list[dict], budget: int, reference: str = REFERENCE,
              rungs: dict[str, int] | None = None) -> list[dict]:
    """Per strategy: median and range over seeds of final best val and test mIoU, the headline ratio, and compute
    and ranking (compute_summary; `rungs`: each strategy's grace_period)."""
    runs_by_strategy = by_run(rows)
    finals = {s: [best_at(seed_rows, budget) for seed_rows in seeds.values()] for s, seeds in runs_by_strategy.items()}
    target = statistics.median(finals[reference]) if reference in finals else None
    summary = []
    for strategy, values in finals.items():
        tests = [float(r["test_miou"]) for r in runs if r["strategy"] == strategy and r["test_miou"] not in ("", None)]
        reached = None if target is None else epochs_to_reach([r for r in rows if r["strategy"] == strategy], target,
                                                              budget)
        summary.append({"strategy": strategy, "reference": reference, "seeds": len(values),
                        "val_median": statistics.median(values), "val_min": min(values), "val_max": max(values),
                        "test_median": statistics.median(tests) if tests else None,
                        "test_min": min(tests) if tests else None, "test_max": max(tests) if tests else None,
                        "epochs_to_reference": reached,
                        "fraction_of_budget": None if reached is None else reached / budget,
                        **compute_summary(runs_by_strategy[strategy], target, (rungs or {}).get(strategy))})
    return summary


def format_summary(summary: list[dict], budget: int, notes: list[str] = ()) -> str:
    def spread(row, key):
        return "-" if row[f"{key}_median"] is None else \
            f"{row[f'{key}_median']:.4f} [{row[f'{key}_min']:.4f}, {row[f'{key}_max']:.4f}]"
    name = summary[0]["reference"] if summary else REFERENCE
    reference = next((r for r in summary if r["strategy"] == name), None)
    lines = [f"# Matched-compute comparison: {budget} epochs per run", "",
             f"Reference: {name}'s median final best val mIoU"
             + (f" = {reference['val_median']:.4f}." if reference else " (not run: no ratio)."), "",
             "| strategy | seeds | final best val mIoU, median [min, max] | test mIoU of the final pick, median "
             f"[min, max] | epochs to reach the reference (fraction of {budget}) |", "|---|---|---|---|---|"]
    for row in summary:
        reached = ("-" if not reference else "not reached" if row["epochs_to_reference"] is None
                   else f"{row['epochs_to_reference']} ({row['fraction_of_budget']:.2f})")
        lines.append(f"| {row['strategy']} | {row['seeds']} | {spread(row, 'val')} | {spread(row, 'test')} | {reached} |")
    lines += compute_table(summary, reference)
    return "\n".join(lines + ([""] + [f"- {note}" for note in notes] if notes else [])) + "\n"


def compute_table(summary: list[dict], reference: dict | None) -> list[str]:
    """The compute-and-ranking table's lines, or none when no run recorded trial-seconds (results of an older
    compare_searchers)."""
    if all(row["seconds_total"] is None for row in summary):
        return []

    def amount(row, name, unit):
        total = None if reference is None else reference[f"{name}_total"]
        value = row[f"{name}_to_reference"]
        if value is None:
            return "-" if reference is None or row[f"{name}_total"] is None else "not reached"
        return f"{value / unit:.1f}" + (f" ({value / total:.2f})" if total else "")
    lines = ["", "Compute and ranking (medians over seeds; fractions of the reference's whole run; tau: Kendall's "
             "tau-b between the trials' val mIoU at epoch grace_period and at their last epoch, over the trials "
             "that went past it):", "",
             "| strategy | trial-seconds per run | trial-seconds to reach the reference | Mpixels per run "
             "| Mpixels to reach the reference | first-rung tau (trials) |", "|---|---|---|---|---|---|"]
    for row in summary:
        seconds = "-" if row["seconds_total"] is None else f"{row['seconds_total']:.1f}"
        pixels = "-" if row["pixels_total"] is None else f"{row['pixels_total'] / 1e6:.1f}"
        tau = "-" if row["rung_tau"] is None else f"{row['rung_tau']:.2f} ({row['rung_trials']})"
        lines.append(f"| {row['strategy']} | {seconds} | {amount(row, 'seconds', 1)} | {pixels} "
                     f"| {amount(row, 'pixels', 1e6)} | {tau} |")
    return lines


def legend_label(strategy: str, width: int = 40) -> str:
    """A strategy name broken into lines of about `width` characters at its ':' options, for a legend beside a plot."""
    lines = [""]
    for part in strategy.split(":"):
        piece = part if not lines[-1] else ":" + part
        if lines[-1] and len(lines[-1]) + len(piece) > width:
            lines.append("  :" + part)
        else:
            lines[-1] += piece
    return "\n".join(lines)


def plot_anytime(rows: list[dict], budget: int, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for strategy, (epochs, median, low, high) in anytime_bands(rows, budget).items():
        shown = [i for i, value in enumerate(low) if value > float("-inf")]  # from the epoch every seed has a score
        line, = axes.step([epochs[i] for i in shown], [median[i] for i in shown], where="post",
                          label=legend_label(strategy))
        axes.fill_between([epochs[i] for i in shown], [low[i] for i in shown], [high[i] for i in shown], step="post",
                          alpha=0.2, color=line.get_color())
    axes.set_xlabel("epochs spent (all trials)")
    axes.set_ylabel("best val mIoU so far")
    axes.set_title("median and min-max over seeds")
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", frameon=False)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path


# --------------------------------------------------------------------------- running the searches

def run_overrides(base, strategy: str, seed: int, budget: int, storage: Path, tracking_uri: str) -> tuple[dict, list[str]]:
    """The load_config overrides of one (strategy, seed) run, and notes on what a baseline could not set."""
    from spaces import DEFAULT_MODEL, get_recipes
    name = re.sub(r"[^A-Za-z0-9_.+:=-]", "_", f"{strategy}-seed{seed}")  # [0.5,1.0] of a space option: no brackets
    common = {"seed": seed, "split_seed": base.splits_seed, "epoch_budget": budget, "name": name,
              "storage_path": str(storage), "tracking_uri": tracking_uri, "mlflow_experiment": "compare_searchers"}
    if strategy not in BASELINES:
        pair, options = parse_strategy(strategy)
        sampler, _, scheduler = pair.partition("+")
        space = {k.removeprefix("space."): options.pop(k) for k in [k for k in options if k.startswith("space.")]}
        if space:  # a searched dimension of this strategy's own, beside the config's space_overrides
            options["space_overrides"] = {**(base.space_overrides or {}), **space}
        return {**common, "sampler": sampler, "scheduler": scheduler,
                "num_samples": max(base.num_samples, budget), **options}, []  # the budget ends it, not num_samples
    if strategy == "default":
        wanted = DEFAULT_MODEL
    else:
        recipes = get_recipes(base.space, base.space_overrides)
        if not recipes:
            return {}, [f"recipe: space {base.space!r} has no starting recipe; no recipe row"]
        wanted = recipes[0]
    fixed, notes = fixed_overrides(base.space, base.space_overrides, wanted, strategy)
    return {**common, "space_overrides": {**(base.space_overrides or {}), **fixed}, "num_samples": 1,
            "max_epochs": budget, "grace_period": budget, "scheduler": "fifo", "sampler": "random",
            "evaluate_recipes": False, "max_concurrent_trials": 1,
            # the one trial may use the CPUs the searches' concurrent trials share: the same compute, less wall time
            "cpus_per_trial": min(os.cpu_count() or 1, base.cpus_per_trial * base.max_concurrent_trials)}, notes


def split_strategies(text: str) -> list[str]:
    """--strategies split at its commas, but not those inside brackets: 'tpe+asha:space.scale=[0.5,1.0],random+fifo'."""
    return [s for s in re.split(r",(?![^\[\]]*\])", text) if s]


def parse_strategy(strategy: str) -> tuple[str, dict]:
    """'tpe+asha:n_startup_trials=3:grace_period=1' -> ('tpe+asha', {'n_startup_trials': 3, 'grace_period': 1}):
    a sampler+scheduler pair and search options of its own (values read as YAML), to compare defaults. An option
    named space.PARAM (tpe+asha:space.scale=[0.5,1.0]) is a space_overrides entry, merged into the config's."""
    import yaml
    pair, *settings = strategy.split(":")
    options = {}
    for setting in settings:
        key, equals, value = setting.partition("=")
        if not equals or not key:
            raise ValueError(f"--strategies: {setting!r} in {strategy!r} is not option=value")
        options[key] = yaml.safe_load(value)
    return pair, options


def fixed_overrides(space: str, overrides: dict | None, wanted: dict, strategy: str) -> tuple[dict, list[str]]:
    """space_overrides that fix every parameter of the space: `wanted`'s values where the space has the parameter,
    TrialConfig's defaults for whatever else it still samples (augmentations off, no warm-up ...)."""
    import dataclasses

    from trainables import TrialConfig
    defaults = {f.name: f.default for f in dataclasses.fields(TrialConfig)}
    sampled, every = space_parameters(space, overrides)
    fixed = {k: v for k, v in wanted.items() if k in every}
    notes = [f"{strategy}: space {space!r} has no parameter {k}; its trial uses TrialConfig's {k} = {defaults.get(k)!r}"
             for k in wanted if k not in every]
    while True:  # a fixed choice opens conditional parameters (fix those too) or closes them (drop those)
        sampled, every = space_parameters(space, {**(overrides or {}), **fixed})
        closed = [k for k in fixed if k not in every]  # e.g. early_stop_min_delta once early_stop_patience is None
        if not sampled and not closed:
            return fixed, notes
        fixed.update({k: defaults[k] for k in sampled})
        for k in closed:
            del fixed[k]


def space_parameters(space: str, overrides: dict | None, samples: int = 64) -> tuple[set[str], set[str]]:
    """The parameters a space still samples and all it sets (as validate_space finds them: by sampling at random)."""
    import optuna
    from spaces import field_name, get_space
    sample = get_space(space, overrides)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    sampled, every = set(), set()
    for _ in range(samples):
        trial = study.ask()
        constants = sample(trial) or {}
        sampled |= {field_name(k) for k in trial.params}
        every |= sampled | {field_name(k) for k in constants}
        study.tell(trial, 0.0)
    return sampled, every


def score_on_test(experiment: Path, checkpoint_folder: str) -> float:
    """The checkpoint's mIoU on its experiment's test split, as bench/score_checkpoint.py scores it."""
    import torch

    from search.experiment import load_experiment_data, open_experiment
    from segtune import names
    from trainables import build_loss, load_model
    from trainables.device import Compute
    from trainables.loop import evaluate
    from trainables.scale import reference_loader
    _, data, splits = load_experiment_data(open_experiment(experiment))
    model, trial_cfg = load_model(Path(checkpoint_folder) / names.CHECKPOINT_FILE)
    loader = reference_loader(data, splits["test"], trial_cfg)  # at the trial's scale, scored at the labels' size
    scores = evaluate(model, loader, build_loss("cross_entropy", trial_cfg.ignore_index), trial_cfg,
                      Compute(torch.device("cpu")))
    return scores[names.VAL_MIOU]


def run_one(config: str, overrides: dict, strategy: str, seed: int) -> tuple[list[dict], dict]:
    from search import load_config, run_search
    from search.budget import read_epoch_log
    started = time.monotonic()
    outcome = run_search(load_config(config, overrides))
    if outcome.results.num_terminated + outcome.results.num_errors < len(outcome.results):
        # Ray ends fit() quietly on Ctrl-C: an interrupted run is not recorded, so it runs again when resumed
        raise KeyboardInterrupt(f"{strategy} seed {seed} was interrupted; run the command again to redo it")
    rows = anytime_rows(strategy, seed, read_epoch_log(outcome.paths.epochs))
    pick = next((row for row in outcome.leaderboard if row.checkpoint), None)
    note = "" if pick is outcome.best else "the best trial kept no checkpoint (stopped by the budget); picked the next"
    run = {"strategy": strategy, "seed": seed, "experiment": str(outcome.paths.root), "trials": len(outcome.leaderboard),
           "epochs": rows[-1]["cumulative_epochs"] if rows else 0,
           "final_best_val_miou": rows[-1]["best_val_miou"] if rows else "",
           "pick_trial": pick.trial_id if pick else "", "pick_val_miou": pick.val_miou if pick else "",
           "test_miou": score_on_test(outcome.paths.root, pick.checkpoint) if pick else "",
           "wall_s": round(time.monotonic() - started, 1), "note": note}
    return rows, run


def read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def write_csv(path: Path, columns, rows) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        writer.writerows(rows)


def typed(rows: list[dict]) -> list[dict]:
    """results.csv rows as numbers; the columns a row lacks (written before they existed) or left empty are None."""
    optional = {"epoch": int, "val_miou": float, "train_scale": float, "cumulative_seconds": float,
                "cumulative_pixels": int}
    return [{**r, "seed": int(r["seed"]), "trial": int(r["trial"]), "cumulative_epochs": int(r["cumulative_epochs"]),
             "best_val_miou": float(r["best_val_miou"]),
             **{key: kind(float(r[key])) if r.get(key) not in ("", None) else None for key, kind in optional.items()}}
            for r in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="a segtune search config (YAML)")
    parser.add_argument("--strategies", default="tpe+asha,random+fifo",
                        help="comma-separated sampler+scheduler pairs (tpe|random|gp + asha|hyperband|fifo), each "
                             "with search options of its own if wanted: tpe+asha:n_startup_trials=3:grace_period=1; "
                             "space.PARAM=VALUE adds a searched dimension: tpe+asha:space.scale=[0.5,1.0]")
    parser.add_argument("--baselines", default=",".join(BASELINES), help="default,recipe or a subset ('' for none)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--budget-epochs", type=int, required=True, help="epochs per run, summed over its trials")
    parser.add_argument("--out", type=Path, default=Path("bench_results/compare_searchers"))
    parser.add_argument("--set", default=None, help="more search options as a YAML mapping, e.g. '{steps_per_epoch: 4}'")
    parser.add_argument("--reference", default=REFERENCE,
                        help=f"the strategy whose median final best the others' compute is measured to (default "
                             f"{REFERENCE}); one of --strategies")
    args = parser.parse_args(argv)

    import yaml
    from search import load_config
    from search.config import SAMPLERS, SCHEDULERS
    strategies = split_strategies(args.strategies)
    for strategy in strategies:
        try:
            pair, options = parse_strategy(strategy)
        except ValueError as error:
            parser.error(str(error))
        sampler, plus, scheduler = pair.partition("+")
        if strategy not in BASELINES and not (plus and sampler in SAMPLERS and scheduler in SCHEDULERS):
            parser.error(f"--strategies: {strategy!r} is not sampler+scheduler[:option=value...] ({'|'.join(SAMPLERS)}"
                         f" + {'|'.join(SCHEDULERS)}) nor one of {list(BASELINES)}")
    unknown = [b for b in args.baselines.split(",") if b and b not in BASELINES]
    if unknown:
        parser.error(f"--baselines: {unknown} are not among {list(BASELINES)}")
    if args.budget_epochs < 1:
        parser.error("--budget-epochs: must be >= 1 epoch")
    strategies += [b for b in args.baselines.split(",") if b and b not in strategies]
    if args.reference != REFERENCE and args.reference not in strategies:  # without the default: no ratio, as before
        parser.error(f"--reference: {args.reference!r} is not among the strategies and baselines {strategies}")
    seeds = [int(s) for s in args.seeds.split(",")]
    extra = yaml.safe_load(args.set) if args.set else {}
    base = load_config(args.config, extra)
    out = args.out.resolve()
    rungs = {s: parse_strategy(s)[1].get("grace_period", base.grace_period) for s in strategies if s not in BASELINES}
    for strategy in strategies:  # each run's options are checked before any run starts
        try:
            load_config(args.config, {**extra, **run_overrides(base, strategy, seeds[0], args.budget_epochs,
                                                               out / "runs", f"sqlite:///{out}/mlflow.db")[0]})
        except (ValueError, TypeError) as error:
            parser.error(f"--strategies {strategy!r}: {error}")
    out.mkdir(parents=True, exist_ok=True)
    results_path, runs_path = out / "results.csv", out / "runs.csv"
    runs = read_csv(runs_path)
    finished = {(r["strategy"], int(r["seed"])) for r in runs}
    # rows of a run that did not finish are dropped: it is run again from the start
    results = [r for r in read_csv(results_path) if (r["strategy"], int(r["seed"])) in finished]
    write_csv(results_path, RESULT_COLUMNS, results)
    notes = []
    # seed-major, so a comparison cut short by the session's end holds whole seeds of every strategy
    for seed in seeds:
        for strategy in strategies:
            overrides, run_notes = run_overrides(base, strategy, seed, args.budget_epochs, out / "runs",
                                                 f"sqlite:///{out}/mlflow.db")
            notes += [n for n in run_notes if n not in notes]
            if not overrides:
                continue
            if (strategy, seed) in finished:
                print(f"{strategy} seed {seed}: finished before, skipped", flush=True)
                continue
            shutil.rmtree(out / "runs" / overrides["name"], ignore_errors=True)  # a half-done run starts over
            rows, run = run_one(args.config, {**extra, **overrides}, strategy, seed)
            results += rows
            runs.append(run)
            write_csv(results_path, RESULT_COLUMNS, results)
            write_csv(runs_path, RUN_COLUMNS, runs)
            print(f"{strategy} seed {seed}: best val {run['final_best_val_miou']}, test {run['test_miou']} "
                  f"after {run['epochs']} epochs in {run['wall_s']} s", flush=True)
            write_summary(out, results, runs, args.budget_epochs, notes, args.reference, rungs)  # after every run
    write_summary(out, results, runs, args.budget_epochs, notes, args.reference, rungs)
    print((out / "summary.md").read_text())
    return 0


def write_summary(out: Path, results: list[dict], runs: list[dict], budget: int, notes: list[str],
                  reference: str = REFERENCE, rungs: dict[str, int] | None = None) -> None:
    """summary.md, summary.json and anytime.png of the runs finished so far."""
    rows = typed(results)
    summary = summarise(rows, runs, budget, reference, rungs)
    (out / "summary.md").write_text(format_summary(summary, budget, notes))
    plot_anytime(rows, budget, out / "anytime.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    raise SystemExit(main())
