"""Count the epochs a search spends, in the order the driver receives them, and stop it at epoch_budget.

Every result a trial reports is one epoch (the trainable reports once per epoch), so the epochs spent
are the results received. The log (trial, its epoch, val mIoU) is what an anytime curve is drawn from:
best val mIoU so far against epochs spent. Epochs need not cost alike (a trial's scale, progressive
resolution), so each row also holds the epoch's seconds (Ray's time_this_iter_s: training, validation and
checkpoint), the scale it trained at and the pixels of training crops it passed through the network.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ray.tune.stopper import Stopper

from segtune import names

SECONDS = "seconds"
"""The log's column of an epoch's wall seconds in its trial (Ray's time_this_iter_s)."""
LOG_COLUMNS = ("trial_id", names.EPOCH, names.VAL_MIOU, SECONDS, names.TRAIN_SCALE, names.TRAIN_PIXELS)


class EpochLog(Stopper):
    """A Ray Tune stopper that logs every epoch and ends the search once `budget` epochs are spent (None: never)."""

    def __init__(self, budget: int | None):
        self.budget, self.rows, self._seen = budget, [], set()

    def __call__(self, trial_id: str, result: dict) -> bool:
        # Ray shows a trial's last result to the stopper twice: as a result and again as it completes
        key = (trial_id, result.get("training_iteration"))
        if key not in self._seen:
            self._seen.add(key)
            # a trial that failed before its first epoch, or a dummy trainable, reports some of these or none
            self.rows.append((trial_id, result.get(names.EPOCH), result.get(names.VAL_MIOU),
                              result.get("time_this_iter_s"), result.get(names.TRAIN_SCALE),
                              result.get(names.TRAIN_PIXELS)))
        return False

    def stop_all(self) -> bool:
        return self.budget is not None and len(self.rows) >= self.budget

    def write(self, path: Path) -> None:
        with open(path, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(LOG_COLUMNS)
            writer.writerows(self.rows)


def read_epoch_log(path: Path) -> list[dict]:
    """The rows EpochLog.write wrote, epochs and pixels as integers, the rest as floats; None where a value is
    empty (a trial that failed first) or a column missing (a log written before the column existed)."""
    kinds = {names.EPOCH: int, names.VAL_MIOU: float, SECONDS: float, names.TRAIN_SCALE: float,
             names.TRAIN_PIXELS: int}
    with open(path, newline="") as file:
        return [{"trial_id": row["trial_id"],
                 **{column: kind(float(row[column])) if row.get(column) else None for column, kind in kinds.items()}}
                for row in csv.DictReader(file)]
