"""Count the epochs a search spends, in the order the driver receives them, and stop it at epoch_budget.

Every result a trial reports is one epoch (the trainable reports once per epoch), so the epochs spent
are the results received. The log (trial, its epoch, val mIoU) is what an anytime curve is drawn from:
best val mIoU so far against epochs spent.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ray.tune.stopper import Stopper

from segtune import names

LOG_COLUMNS = ("trial_id", names.EPOCH, names.VAL_MIOU)


class EpochLog(Stopper):
    """A Ray Tune stopper that logs every epoch and ends the search once `budget` epochs are spent (None: never)."""

    def __init__(self, budget: int | None):
        self.budget, self.rows, self._seen = budget, [], set()

    def __call__(self, trial_id: str, result: dict) -> bool:
        # Ray shows a trial's last result to the stopper twice: as a result and again as it completes
        key = (trial_id, result.get("training_iteration"))
        if key not in self._seen:
            self._seen.add(key)
            self.rows.append((trial_id, result.get(names.EPOCH), result.get(names.VAL_MIOU)))
        return False

    def stop_all(self) -> bool:
        return self.budget is not None and len(self.rows) >= self.budget

    def write(self, path: Path) -> None:
        with open(path, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(LOG_COLUMNS)
            writer.writerows(self.rows)


def read_epoch_log(path: Path) -> list[dict]:
    """The rows EpochLog.write wrote, epochs as integers and scores as floats (empty when a trial failed first)."""
    with open(path, newline="") as file:
        return [{"trial_id": row["trial_id"], names.EPOCH: int(row[names.EPOCH]) if row[names.EPOCH] else None,
                 names.VAL_MIOU: float(row[names.VAL_MIOU]) if row[names.VAL_MIOU] else None}
                for row in csv.DictReader(file)]
