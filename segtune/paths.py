"""Every output path of an experiment, built in one place.

    <storage_path>/<name>/                 Ray Tune's experiment folder (trials, checkpoints)
    <storage_path>/<name>/segtune/         what segtune adds: the config, splits and exclusion list that
                                           made it, the leaderboard, plots, the MLflow parent run id
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ExperimentPaths:
    root: Path

    @property
    def segtune(self) -> Path:
        return self.root / "segtune"

    @property
    def config(self) -> Path:
        return self.segtune / "search_config.yaml"

    @property
    def splits(self) -> Path:
        return self.segtune / "splits.json"

    @property
    def exclusions(self) -> Path:
        """The exclusion list the search was started with (a copy of exclude_file)."""
        return self.segtune / "exclusions.txt"

    @property
    def leaderboard(self) -> Path:
        return self.segtune / "leaderboard.csv"

    @property
    def parent_run(self) -> Path:
        return self.segtune / "mlflow_parent_run_id.txt"

    def plot(self, name: str) -> Path:
        return self.segtune / "plots" / f"{name}.png"

    def create(self) -> "ExperimentPaths":
        (self.segtune / "plots").mkdir(parents=True, exist_ok=True)
        return self


def experiment_paths(storage_path: str, name: str) -> ExperimentPaths:
    """Local storage paths are made absolute (Ray needs that); URIs such as s3:// are kept."""
    if "://" in storage_path:
        raise ValueError(f"storage_path {storage_path}: remote storage is not supported yet; use a local or shared folder")
    return ExperimentPaths(Path(storage_path).expanduser().resolve() / name)
