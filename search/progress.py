"""One readable line per trial epoch while a search runs, and the final leaderboard."""

from __future__ import annotations

from ray import tune

from segtune import names
from segtune.tracking import trial_error_text


class ProgressLine(tune.Callback):
    """Prints: trial, epoch, its mIoU, the best mIoU so far, and how many trials are in each state."""

    def __init__(self, num_samples: int, max_epochs: int):
        self.num_samples, self.max_epochs, self.best = num_samples, max_epochs, (0.0, "-")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        miou = result.get(names.VAL_MIOU, 0.0)
        if miou > self.best[0]:
            self.best = (miou, trial.trial_id)
        states = {}
        for t in trials:
            states[t.status.lower()] = states.get(t.status.lower(), 0) + 1
        counts = " ".join(f"{k}={v}" for k, v in sorted(states.items()))
        print(f"[{trial.trial_id} epoch {result[names.EPOCH]}/{self.max_epochs}] val_miou {miou:.3f}  "
              f"best so far {self.best[0]:.3f} ({self.best[1]})  | trials {len(trials)}/{self.num_samples}: {counts}",
              flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        last_line = trial_error_text(trial).splitlines()[-1]
        print(f"[{trial.trial_id}] FAILED: {last_line} (the search goes on)", flush=True)


def format_leaderboard(rows: list, limit: int = 10) -> str:
    """The best `limit` LeaderboardRows as a table."""
    header = f"{'rank':>4}  {'trial':<16} {'status':<14} {'epochs':>6} {'val_miou':>8}  params"
    lines = [header, "-" * len(header)]
    for rank, row in enumerate(rows[:limit], 1):
        params = ", ".join(f"{k}={_short(v)}" for k, v in row.params.items())
        lines.append(f"{rank:>4}  {row.trial_id:<16} {row.outcome:<14} {row.epochs:>6} {row.val_miou:>8.4f}  {params}")
    return "\n".join(lines)


def _short(value):
    return f"{value:.3g}" if isinstance(value, float) else value
