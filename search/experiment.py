"""Read a finished (or interrupted) experiment back: its config, data with exclusions, splits and trials.

Everything after a search (scoring a checkpoint, building an ensemble) starts here, so it sees exactly
the images and splits the search saw.
"""

from __future__ import annotations

import json

from ray.tune import ExperimentAnalysis, ResultGrid

from search.config import SearchConfig, load_config
from segtune.data import SegmentationData, exclude_images, load_dataset
from segtune import storage
from segtune.paths import ExperimentPaths, experiment_at


def open_experiment(location) -> ExperimentPaths:
    """An experiment given as its folder or its s3:// URI (whose segtune/ files are fetched first)."""
    paths = storage.pull(experiment_at(location))
    if not paths.config.is_file() or not paths.splits.is_file():
        raise FileNotFoundError(f"{paths.tune_path} is not a segtune experiment (no {paths.config.name} and "
                                f"{paths.splits.name} under segtune/); pass the folder `segtune search` printed")
    return paths


def load_experiment_data(paths: ExperimentPaths) -> tuple[SearchConfig, SegmentationData, dict[str, list[str]]]:
    """The search's config, its data with the saved exclusions applied, and its saved splits."""
    cfg = load_config(str(paths.config))
    data = load_dataset(cfg.data, classes=cfg.classes, colour_map=cfg.colour_map, ignore_index=cfg.ignore_index,
                        resize=cfg.resize)
    data, _ = exclude_images(data, paths.exclusions if paths.exclusions.exists() else None)
    return cfg, data, json.loads(paths.splits.read_text())


def load_results(paths: ExperimentPaths) -> ResultGrid:
    """The trials through Ray's results API (not by globbing trial folders)."""
    return ResultGrid(ExperimentAnalysis(paths.tune_path))
