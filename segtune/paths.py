"""Every output path of an experiment, built in one place.

    <storage_path>/<name>/                 Ray Tune's experiment folder (trials, checkpoints)
    <storage_path>/<name>/segtune/         what segtune adds: the config, splits and exclusion list that
                                           made it, its data's fingerprint, the warm-start configs it queued,
                                           the leaderboard, plots, the MLflow parent run id, and
                                           study.db, the search's Optuna study (unless study_storage names
                                           another database)
    <storage_path>/<name>/segtune/ensemble/  what `segtune ensemble` adds: members' probabilities, its
                                           report and plots, the combiner and the exported bundle

storage_path is a local folder, a shared filesystem path (NFS) or an s3:// URI. For s3://, Ray reads
and writes the bucket itself and segtune works on a local copy of segtune/ (under SEGTUNE_CACHE,
default ~/.cache/segtune) that segtune/storage.py keeps in step with the bucket.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REMOTE_SCHEMES = ("s3",)


@dataclass(frozen=True)
class EnsemblePaths:
    root: Path
    """<experiment>/segtune/ensemble/"""

    @property
    def probabilities(self) -> Path:
        """One folder per member of float16 probability maps on the validation and test images."""
        return self.root / "probabilities"

    @property
    def fold_probabilities(self) -> Path:
        """A refit's fold models' own test maps, one folder a fold: <fold>/<member>/<image_id>.npy."""
        return self.root / "fold_probabilities"

    @property
    def report(self) -> Path:
        """Every candidate's scores, the members and their checkpoints (report.json)."""
        return self.root / "report.json"

    @property
    def table(self) -> Path:
        """The candidates' scores as CSV."""
        return self.root / "report.csv"

    @property
    def combiner(self) -> Path:
        """The chosen combiner's weights (tensors only): with the members' checkpoints, the eager ensemble."""
        return self.root / "combiner.pt"

    @property
    def bundle(self) -> Path:
        """The exported bundle for `segtune predict`."""
        return self.root / "bundle"

    def plot(self, name: str) -> Path:
        return self.root / "plots" / f"{name}.png"


@dataclass(frozen=True)
class ExperimentPaths:
    root: Path
    """The local experiment folder, or the local working copy of a remote one."""
    uri: str | None = None
    """The remote experiment (s3://bucket/prefix/name), when storage_path is remote."""

    @property
    def tune_path(self) -> str:
        """The experiment as Ray Tune reads and writes it."""
        return self.uri or str(self.root)

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
    def fingerprint(self) -> Path:
        """The search data's fingerprint (segtune/inspect/fingerprint.py), which --warm-start auto compares."""
        return self.segtune / "fingerprint.json"

    @property
    def warm_start(self) -> Path:
        """The earlier searches' configs a warm-started search queued, and what was dropped, clipped or skipped."""
        return self.segtune / "warm_start.json"

    @property
    def leaderboard(self) -> Path:
        return self.segtune / "leaderboard.csv"

    @property
    def epochs(self) -> Path:
        """Every epoch a trial reported, in the order the driver received it (search/budget.py)."""
        return self.segtune / "epochs.csv"

    @property
    def study(self) -> Path:
        """The Optuna study's SQLite database when the config names no study_storage (search/study.py)."""
        return self.segtune / "study.db"

    @property
    def parent_run(self) -> Path:
        return self.segtune / "mlflow_parent_run_id.txt"

    def plot(self, name: str) -> Path:
        return self.segtune / "plots" / f"{name}.png"

    @property
    def ensemble(self) -> EnsemblePaths:
        return EnsemblePaths(self.segtune / "ensemble")

    def create(self) -> "ExperimentPaths":
        (self.segtune / "plots").mkdir(parents=True, exist_ok=True)
        return self


def is_remote(location: str | os.PathLike) -> bool:
    return "://" in str(location)


def experiment_paths(storage_path: str, name: str) -> ExperimentPaths:
    """Local storage paths are made absolute (Ray needs that); s3:// URIs get a local working copy."""
    if not is_remote(storage_path):
        return ExperimentPaths(Path(storage_path).expanduser().resolve() / name)
    scheme, _, rest = storage_path.partition("://")
    rest = rest.strip("/")
    if scheme not in REMOTE_SCHEMES or not rest:
        raise ValueError(f"storage_path {storage_path}: use a local or shared folder, or s3://bucket[/prefix]")
    cache = Path(os.environ.get("SEGTUNE_CACHE", "~/.cache/segtune")).expanduser().resolve()
    return ExperimentPaths(cache / scheme / rest / name, f"{scheme}://{rest}/{name}")


def experiment_at(location: str | os.PathLike) -> ExperimentPaths:
    """The paths of an existing experiment given as its folder or its s3:// URI."""
    if is_remote(location):
        parent, _, name = str(location).rstrip("/").rpartition("/")
        return experiment_paths(parent, name)
    return ExperimentPaths(Path(location).expanduser().resolve())
