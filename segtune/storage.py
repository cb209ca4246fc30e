"""Keep the local working copy of a remote (s3://) experiment in step with the bucket.

Ray Tune reads and writes the bucket itself (trials, checkpoints, the searcher's state). segtune's own
files (config, splits, leaderboard, plots, the ensemble) are written locally, then pushed; commands that
open a remote experiment pull them first. Local experiments pass through every function untouched.

The bucket is reached through pyarrow's S3 filesystem, as Ray reaches it: credentials and region come
from the usual AWS sources (an instance profile on cluster.yaml's nodes, AWS_PROFILE, AWS_* variables);
AWS_ENDPOINT_URL points at an S3-compatible server instead of AWS.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow.fs as pafs

from segtune.names import CHECKPOINT_FILE
from segtune.paths import ExperimentPaths, is_remote


def _filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    try:
        return pafs.FileSystem.from_uri(uri)
    except (OSError, ValueError) as error:
        raise ConnectionError(f"storage {uri}: {error}") from None


def _info(fs: pafs.FileSystem, path: str, uri: str) -> pafs.FileInfo:
    try:
        return fs.get_file_info(path)
    except OSError as error:
        raise ConnectionError(f"storage {uri} could not be reached ({str(error).splitlines()[0]}); check the bucket "
                              "name, AWS credentials (AWS_PROFILE, an instance profile) and AWS_ENDPOINT_URL") from None


def check_reachable(paths: ExperimentPaths) -> None:
    """Before any compute: the bucket of a remote experiment exists and answers."""
    if paths.uri is None:
        return
    fs, path = _filesystem(paths.uri)
    bucket = path.split("/", 1)[0]
    if _info(fs, bucket, paths.uri).type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"storage_path {paths.uri}: bucket {bucket} does not exist; create it first")


def pull(paths: ExperimentPaths) -> ExperimentPaths:
    """Replace the local segtune/ folder with the bucket's (a remote experiment not yet started has none), all but a
    local study database (search/study.py), which is newer than the bucket's copy."""
    if paths.uri is None:
        return paths
    check_reachable(paths)
    fs, path = _filesystem(paths.uri)
    started = _info(fs, f"{path}/segtune", paths.uri).type == pafs.FileType.Directory
    # the study database here is the live one (written as trials finish); the bucket's copy is from the last push
    live_study = paths.root / f".{paths.study.name}"
    keep_study = started and paths.study.is_file()
    if keep_study:
        os.replace(paths.study, live_study)
    shutil.rmtree(paths.segtune, ignore_errors=True)
    paths.root.mkdir(parents=True, exist_ok=True)
    if started:
        pafs.copy_files(f"{path}/segtune", str(paths.segtune), source_filesystem=fs,
                        destination_filesystem=pafs.LocalFileSystem())
    if keep_study:
        paths.segtune.mkdir(parents=True, exist_ok=True)
        os.replace(live_study, paths.study)
    return paths


def push(paths: ExperimentPaths) -> None:
    """Upload the local segtune/ folder to the remote experiment."""
    if paths.uri is None or not paths.segtune.is_dir():
        return
    fs, path = _filesystem(paths.uri)
    pafs.copy_files(str(paths.segtune), f"{path}/segtune", source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=fs)


def pull_tune_state(paths: ExperimentPaths) -> Path:
    """The folder holding Ray's experiment-level files (the searcher's state): local, or fetched from the bucket."""
    if paths.uri is None:
        return paths.root
    fs, path = _filesystem(paths.uri)
    for info in fs.get_file_info(pafs.FileSelector(path)):
        if info.type == pafs.FileType.File:
            pafs.copy_files(info.path, str(paths.root / info.base_name), source_filesystem=fs,
                            destination_filesystem=pafs.LocalFileSystem())
    return paths.root


def checkpoint_location(checkpoint) -> str:
    """A Ray checkpoint's folder as a path, or as a URI (s3://...) when it lives in a bucket."""
    return location(checkpoint.filesystem, checkpoint.path)


def location(fs: pafs.FileSystem, path: str) -> str:
    """A path of a pyarrow filesystem as segtune names it: the path itself when local, else a URI (s3://...)."""
    if isinstance(fs, pafs.LocalFileSystem):
        return path
    return f"{fs.type_name}://{path}"


def local_checkpoint(location: str, paths: ExperimentPaths, name: str = CHECKPOINT_FILE) -> Path:
    """The checkpoint file (or file `name`) of a checkpoint folder; one in a bucket is downloaded once into the
    working copy (a file the bucket lacks raises OSError)."""
    if not is_remote(location):
        return Path(location) / name
    relative = location.removeprefix(paths.uri or "").strip("/")
    if relative == location.strip("/"):
        raise ValueError(f"checkpoint {location} is not inside the experiment {paths.uri}")
    local = paths.root / relative / name
    if not local.exists():
        fs, path = _filesystem(location)
        local.parent.mkdir(parents=True, exist_ok=True)
        partial = local.with_suffix(".partial")
        pafs.copy_files(f"{path}/{name}", str(partial), source_filesystem=fs,
                        destination_filesystem=pafs.LocalFileSystem())
        partial.rename(local)
    return local
