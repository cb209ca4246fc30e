"""Re-pick and re-score the finished runs of a benchmark folder after a fix to how a trial's checkpoint is chosen.

    python bench/rescore_picks.py /work/bench_runs/cwfid /work/bench_runs/warm_cwfid

For each run in OUT/runs.csv (bench/compare_searchers.py's and bench/warm_start.py's), the run's experiment is
read back through Ray's results API and its leaderboard rebuilt with search.report.leaderboard_rows. Where its
pick (the first trial with a checkpoint) now holds another checkpoint than the leaderboard.csv the search wrote,
that checkpoint is scored once on test as the harness scores it, leaderboard.csv is rewritten, and the run's row
gets the new pick_trial, pick_val_miou and test_miou with a note naming the checkpoint it replaced. Runs whose pick
is unchanged are left as they are. Then run the harness's own command again: it skips every finished run and
rewrites summary.md from the corrected runs.csv.

Why (97bd500): a search ended by epoch_budget stops the running trials before Ray registers the checkpoint of
their last report, and the leaderboard paired the best epoch's val mIoU with an earlier epoch's checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.compare_searchers import read_csv, score_on_test, write_csv  # noqa: E402


def written_pick(experiment: Path) -> str:
    """The checkpoint of the first leaderboard.csv row that has one, as the search wrote it ('' if none)."""
    rows = read_csv(experiment / "segtune" / "leaderboard.csv")
    return next((r["checkpoint"] for r in rows if r["checkpoint"]), "")


def rescore_run(run: dict) -> dict:
    """The run's row, re-picked and re-scored where its pick's checkpoint changed; the same row otherwise."""
    from search import load_config
    from search.experiment import load_results, open_experiment
    from search.report import leaderboard_rows, write_leaderboard
    paths = open_experiment(run["experiment"])
    cfg = load_config(str(paths.config))
    rows = leaderboard_rows(load_results(paths), cfg.max_epochs)
    pick = next((row for row in rows if row.checkpoint), None)
    before = written_pick(Path(run["experiment"]))
    if pick is None or pick.checkpoint == before:
        return run
    test = score_on_test(Path(run["experiment"]), pick.checkpoint)
    write_leaderboard(paths.leaderboard, rows)
    note = (f"re-picked after 97bd500: {Path(pick.checkpoint).parent.name}/{Path(pick.checkpoint).name} "
            f"(was {Path(before).parent.name}/{Path(before).name or 'none'}, test {run['test_miou'] or '-'})")
    print(f"{run['strategy']} seed {run['seed']}: {note}; test now {test:.4f}", flush=True)
    return {**run, "pick_trial": pick.trial_id, "pick_val_miou": pick.val_miou, "test_miou": test,
            "note": "; ".join(n for n in (run.get("note", ""), note) if n)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, nargs="+", help="benchmark folders holding runs.csv")
    args = parser.parse_args(argv)
    for out in args.out:
        path = out / "runs.csv"
        runs = read_csv(path)
        if not runs:
            parser.error(f"{path}: no finished runs to re-score")
        runs = [rescore_run(run) for run in runs]
        write_csv(path, list(runs[0]), runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
