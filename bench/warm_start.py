"""Measure warm starts: the compute a search warm-started from an earlier search needs, against a cold one.

    python bench/make_terrain_tiles.py ../shared/datasets/camvid /tmp/camvid_tiles.npz 300   # the unlike data
    python bench/warm_start.py spaces/configs/crop_weed.yaml --budget-epochs 60 \
        --like-set '{resize: [121, 162], crop: [96, 128]}' \
        --unlike-source spaces/configs/terrain.yaml \
        --unlike-set '{data: /tmp/camvid_tiles.npz, ignore_index: 255, steps_per_epoch: 16}' \
        --seeds 0,1,2 --out bench_results/warm_start

Two earlier searches run first, once each (SOURCE_SEEDS, --source-budget-epochs epochs in all): the like
source (--like-source CONFIG, default CONFIG itself, with --like-set options) and the unlike source
(--unlike-source with --unlike-set; none given, no unlike arm). A source reading CONFIG's data folder leaves out
CONFIG's val and test images (an exclude_file written under --out), so no config is picked on the images the arms
are scored on. --like-experiment / --unlike-experiment take a finished search instead of running one.

Then, per seed, three arms run CONFIG as an ordinary search with epoch_budget --budget-epochs, on the same
splits: cold (no warm start), warm-like and warm-unlike (--warm-start the source's experiment: its best
warm_start_configs configs mapped into CONFIG's space, queued after the preset's recipes).

Written as it goes, under --out (run again, it skips what finished: sources and (arm, seed) runs):
    sources.csv  each source's experiment, final best val mIoU, fingerprint distance to CONFIG's data
    results.csv  arm (as 'strategy'), seed, trial, epoch, cumulative epochs, best val mIoU so far
    runs.csv     one row per finished run (as bench/compare_searchers.py's) and the warm configs it queued
    summary.md   per arm: final best val and test mIoU (median [min, max] over seeds), the paired gain over
                 cold, and the headline: epochs each seed's run needs to reach REACH of the cold run's final
                 best val mIoU (same seed), against the cold run's own, and their ratio
    anytime.png  best val mIoU so far against epochs spent, median and min-max over seeds per arm
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.compare_searchers import (RESULT_COLUMNS, RUN_COLUMNS, best_at, by_run, epochs_to_reach,  # noqa: E402
                                     plot_anytime, read_csv, run_one, typed, write_csv)

REACH = 0.95
"""The share of the cold run's final best val mIoU a run must reach (the issue's measure)."""
SOURCE_SEEDS = {"like": 100, "unlike": 200}
"""Each source's seed: apart from the arms' (a like source on CONFIG's data is not cold seed 0 again) and from each
other (with one seed, two sources of one space try the same random startup configs and often share their best)."""
ARMS = {"cold": None, "warm-like": "like", "warm-unlike": "unlike"}
"""Arm -> the source it starts from."""
SOURCE_COLUMNS = ("source", "experiment", "final_best_val_miou", "distance", "note")


# --------------------------------------------------------------------------- pure functions of the rows

def seed_reach(rows: list[dict], cold_rows: list[dict], budget: int) -> int | None:
    """Epochs one run (its results rows) needs to reach REACH of the cold run's final best; None: never."""
    return epochs_to_reach(rows, REACH * best_at(cold_rows, budget), budget)


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)} if values else {}


def _median_epochs(values: list[int | None]) -> float | None:
    """The median over seeds, a seed that never reached counting as infinitely many epochs (None if the median)."""
    median = statistics.median([float("inf") if v is None else v for v in values]) if values else None
    return None if median is None or median == float("inf") else median


def summarise_arms(rows: list[dict], runs: list[dict], budget: int) -> list[dict]:
    """Per arm: final best val and test mIoU over seeds, the paired gains over cold, and per seed the epochs to reach
    REACH of that seed's cold final best (and the ratio to cold's own epochs to reach it)."""
    runs_by, summary = by_run(rows), []
    cold = runs_by.get("cold", {})
    tests = {(r["strategy"], int(r["seed"])): float(r["test_miou"]) for r in runs if r["test_miou"] not in ("", None)}
    for arm, seeds in runs_by.items():
        paired = [seed for seed in seeds if seed in cold]
        reach = {seed: seed_reach(seeds[seed], cold[seed], budget) for seed in paired}
        cold_reach = {seed: seed_reach(cold[seed], cold[seed], budget) for seed in paired}
        ratios = [reach[s] / cold_reach[s] for s in paired if reach[s] is not None and cold_reach[s]]
        summary.append({
            "arm": arm, "seeds": len(seeds), "val": _spread([best_at(r, budget) for r in seeds.values()]),
            "test": _spread([tests[(arm, s)] for s in seeds if (arm, s) in tests]),
            "val_gain": _spread([best_at(seeds[s], budget) - best_at(cold[s], budget) for s in paired]),
            "test_gain": _spread([tests[(arm, s)] - tests[("cold", s)] for s in paired
                                  if (arm, s) in tests and ("cold", s) in tests]),
            "epochs_to_reach": reach, "cold_epochs_to_reach": cold_reach,
            "median_epochs_to_reach": _median_epochs(list(reach.values())),
            "median_ratio": statistics.median(ratios) if ratios else None, "unreached": sum(v is None for v in
                                                                                               reach.values())})
    return summary


def format_arms(summary: list[dict], sources: list[dict], budget: int, notes: list[str] = ()) -> str:
    def spread(values: dict, signed: bool = False) -> str:
        form = "+.4f" if signed else ".4f"
        return "-" if not values else f"{values['median']:{form}} [{values['min']:{form}}, {values['max']:{form}}]"

    def reached(row: dict) -> str:
        per_seed = ", ".join(f"{seed}: {'-' if v is None else v}/{row['cold_epochs_to_reach'][seed]}"
                             for seed, v in sorted(row["epochs_to_reach"].items()))
        ratio = "-" if row["median_ratio"] is None else f"{row['median_ratio']:.2f}"
        return f"{per_seed or '-'} | {ratio}"
    lines = [f"# Warm start against cold: {budget} epochs per run", "",
             "| source | experiment | final best val mIoU | fingerprint distance to CONFIG's data |",
             "|---|---|---|---|"]
    lines += [f"| {s['source']} | {Path(s['experiment']).name} | {float(s['final_best_val_miou']):.4f} | "
              f"{float(s['distance']):.3f} |" for s in sources]
    lines += ["", f"Reach: epochs a run needs to reach {REACH:.0%} of the cold run's final best val mIoU (same seed), "
                  "against the epochs the cold run itself needed ('-': never within the budget); ratio: median over "
                  "seeds of warm / cold.", "",
              "| arm | seeds | final best val mIoU, median [min, max] | test mIoU of the final pick | val gain over "
              "cold (paired) | test gain over cold (paired) | reach per seed (arm/cold) | ratio |",
              "|---|---|---|---|---|---|---|---|"]
    for row in summary:
        lines.append(f"| {row['arm']} | {row['seeds']} | {spread(row['val'])} | {spread(row['test'])} | "
                     f"{spread(row['val_gain'], True)} | {spread(row['test_gain'], True)} | {reached(row)} |")
    return "\n".join(lines + ([""] + [f"- {note}" for note in notes] if notes else [])) + "\n"


# --------------------------------------------------------------------------- sources and arms

def source_overrides(base, source_cfg, which: str, budget: int, out: Path) -> dict:
    """The load_config overrides of source `which` (like | unlike): its own storage and seed, the budget, and CONFIG's
    val and test images left out when it reads CONFIG's data folder."""
    name = f"source-{which}"
    overrides = {"name": name, "seed": SOURCE_SEEDS[which], "epoch_budget": budget,
                 "storage_path": str(out / "sources"), "tracking_uri": f"sqlite:///{out}/mlflow.db",
                 "mlflow_experiment": "warm_start_bench", "num_samples": max(source_cfg.num_samples, budget),
                 "warm_start": []}
    if source_cfg.data == base.data:
        overrides["exclude_file"] = str(_hold_out(base, source_cfg, out / f"{name}_exclusions.txt"))
    return overrides


def _hold_out(base, source_cfg, path: Path) -> Path:
    """An exclusion list of CONFIG's val and test images, with the source's own exclusions."""
    from search import search_inputs
    from segtune.data.exclusions import read_exclusions, write_exclusions
    _, splits, _ = search_inputs(base)
    held = {image: f"CONFIG's {split} image" for split in ("val", "test") for image in splits[split]}
    own = read_exclusions(source_cfg.exclude_file) if source_cfg.exclude_file else {}
    return write_exclusions(path, {**own, **held}, "bench/warm_start.py: the target search's val and test images")


def run_source(args, base, which: str, sources: list[dict], out: Path) -> dict | None:
    """The finished source `which` (like | unlike): found in sources.csv, given, or run now; None when not asked."""
    from search import load_config
    done = next((s for s in sources if s["source"] == which), None)
    if done:
        print(f"source {which}: finished before ({done['experiment']})", flush=True)
        return done
    given = getattr(args, f"{which}_experiment")
    config = getattr(args, f"{which}_source") or (args.config if which == "like" else None)
    extra = json_or_yaml(getattr(args, f"{which}_set"))
    if given:
        return {"source": which, "experiment": str(Path(given).resolve()), "note": "given"}
    if config is None and not extra:
        return None
    config = config or args.config
    source_cfg = load_config(config, {**json_or_yaml(args.set), **extra})
    overrides = {**json_or_yaml(args.set), **extra,
                 **source_overrides(base, source_cfg, which, args.source_budget_epochs, out)}
    shutil.rmtree(out / "sources" / f"source-{which}", ignore_errors=True)  # a half-done source starts over
    rows, run = run_one(config, overrides, f"source-{which}", SOURCE_SEEDS[which])
    return {"source": which, "experiment": run["experiment"], "final_best_val_miou": run["final_best_val_miou"],
            "note": f"{config} with {extra or 'no changes'}"}


def json_or_yaml(text: str | None) -> dict:
    import yaml
    return (yaml.safe_load(text) or {}) if text else {}


def distance_to(base_fingerprint: dict, experiment: str) -> float:
    from search.experiment import open_experiment
    from segtune.inspect import fingerprint_distance
    return fingerprint_distance(base_fingerprint, json.loads(open_experiment(experiment).fingerprint.read_text()))


def arm_overrides(base, arm: str, seed: int, budget: int, out: Path, sources: dict[str, dict]) -> dict:
    source = ARMS[arm]
    return {"seed": seed, "split_seed": base.splits_seed, "epoch_budget": budget, "name": f"{arm}-seed{seed}",
            "storage_path": str(out / "runs"), "tracking_uri": f"sqlite:///{out}/mlflow.db",
            "mlflow_experiment": "warm_start_bench", "num_samples": max(base.num_samples, budget),
            "warm_start": [sources[source]["experiment"]] if source else []}


def queued_configs(experiment: str) -> int:
    """How many warm configs the run queued (0 for a cold run)."""
    path = Path(experiment) / "segtune" / "warm_start.json"
    return sum(c["status"] == "queued" for c in json.loads(path.read_text())["configs"]) if path.exists() else 0


# --------------------------------------------------------------------------- the command

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="the target search config (YAML) every arm runs")
    parser.add_argument("--budget-epochs", type=int, required=True, help="epochs per arm run, summed over its trials")
    parser.add_argument("--source-budget-epochs", type=int, help="epochs per source search (default --budget-epochs)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=Path("bench_results/warm_start"))
    parser.add_argument("--set", help="search options for every run (sources too), a YAML mapping, e.g. "
                                      "'{steps_per_epoch: 4}'")
    for which in ("like", "unlike"):
        parser.add_argument(f"--{which}-source", help=f"config of the {which} source search"
                                                      + (" (default: CONFIG)" if which == "like" else ""))
        parser.add_argument(f"--{which}-set", help=f"options of the {which} source over its config, a YAML mapping")
        parser.add_argument(f"--{which}-experiment", help=f"a finished search to use as the {which} source")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.budget_epochs < 1 or (args.source_budget_epochs or 1) < 1:
        parser.error("--budget-epochs and --source-budget-epochs: must be >= 1 epoch")
    args.source_budget_epochs = args.source_budget_epochs or args.budget_epochs
    from search import load_config, search_inputs
    from segtune.inspect import data_fingerprint
    base = load_config(args.config, json_or_yaml(args.set))
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    base_fingerprint = data_fingerprint(search_inputs(base)[0])
    sources = [s for s in read_csv(out / "sources.csv") if Path(s["experiment"], "segtune", "leaderboard.csv").exists()]
    found = {}
    for which in ("like", "unlike"):
        source = run_source(args, base, which, sources, out)
        if source is None:
            continue
        source = {**source, "distance": round(distance_to(base_fingerprint, source["experiment"]), 4)}
        source.setdefault("final_best_val_miou", _best_of(source["experiment"]))
        found[which] = source
        sources = [s for s in sources if s["source"] != which] + [source]
        write_csv(out / "sources.csv", SOURCE_COLUMNS, sources)
    run_arms(args, base, out, found)
    return 0


def _best_of(experiment: str) -> float:
    from search.warm_start import best_configs
    from segtune.paths import experiment_at
    best = best_configs(experiment_at(experiment), 1)
    return best[0].val_miou if best else float("nan")


def run_arms(args, base, out: Path, found: dict[str, dict]) -> None:
    """Every (seed, arm) run not finished before, seed-major, the summary rewritten after each."""
    arms = [arm for arm, source in ARMS.items() if source is None or source in found]
    notes = [f"{arm}: no {ARMS[arm]} source given, not run" for arm in ARMS if arm not in arms]
    columns = (*RUN_COLUMNS, "queued")
    runs = read_csv(out / "runs.csv")
    finished = {(r["strategy"], int(r["seed"])) for r in runs}
    results = [r for r in read_csv(out / "results.csv") if (r["strategy"], int(r["seed"])) in finished]
    for seed in (int(s) for s in args.seeds.split(",")):
        for arm in arms:
            if (arm, seed) in finished:
                print(f"{arm} seed {seed}: finished before, skipped", flush=True)
                continue
            overrides = arm_overrides(base, arm, seed, args.budget_epochs, out, found)
            shutil.rmtree(out / "runs" / overrides["name"], ignore_errors=True)  # a half-done run starts over
            rows, run = run_one(args.config, {**json_or_yaml(args.set), **overrides}, arm, seed)
            results += rows
            runs.append({**run, "queued": queued_configs(run["experiment"])})
            write_csv(out / "results.csv", RESULT_COLUMNS, results)
            write_csv(out / "runs.csv", columns, runs)
            print(f"{arm} seed {seed}: best val {run['final_best_val_miou']}, test {run['test_miou']} after "
                  f"{run['epochs']} epochs in {run['wall_s']} s", flush=True)
            write_summary(out, results, runs, list(found.values()), args.budget_epochs, notes)
    write_summary(out, results, runs, list(found.values()), args.budget_epochs, notes)
    print((out / "summary.md").read_text())


def write_summary(out: Path, results: list[dict], runs: list[dict], sources: list[dict], budget: int,
                  notes: list[str]) -> None:
    """summary.md, summary.json and anytime.png of the runs finished so far."""
    if not results:
        return
    rows = typed(results)
    summary = summarise_arms(rows, runs, budget)
    (out / "summary.md").write_text(format_arms(summary, sources, budget, notes))
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    plot_anytime(rows, budget, out / "anytime.png")


if __name__ == "__main__":
    raise SystemExit(main())
