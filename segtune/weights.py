"""Pretrained encoder weights by name, from a cache every node reads: nothing downloads inside a trial.

    <cache>/<encoder>/<weights>/encoder.pt     the encoder's state dict as smp builds it (3 input channels, depth 5)
    <cache>/<encoder>/<weights>/weights.json   where it came from, its SHA-256, the mean/std it was trained with

A search whose encoder_weights is a name (imagenet, or a timm pretrained tag such as a1_in1k for a tu- encoder) fills
the cache once, in the driver, before Ray starts a trial (ensure_cached); without network and without the entries it
refuses before any compute. The cache is the weights_cache option, else $SEGTUNE_CACHE/weights, else
<storage_path>/weights; one in a bucket (s3://) is copied to each node that reads it. On a machine with internet:

    segtune weights fetch tu-resnet18 resnet18 --to /shared/weights                  # imagenet
    segtune weights fetch tu-resnet18 --weights a1_in1k --to /shared/weights         # a timm pretrained tag
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from segtune.paths import is_remote

IMAGENET = "imagenet"
"""The weights name every encoder with pretrained weights answers to (for tu- encoders: timm's default tag)."""
WEIGHTS_FILE = "encoder.pt"
META_FILE = "weights.json"
FILE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
"""encoder_weights ending so is a file, never a name."""
CACHE_FOLDER = "weights"
"""The cache's folder under SEGTUNE_CACHE or storage_path."""


class WeightsUnavailable(ConnectionError):
    """Weights a search needs are neither in its cache nor downloadable here."""

    def __init__(self, message: str, failures: dict[str, Exception]):
        super().__init__(message)
        self.failures = failures
        """Encoder -> the error its download raised."""


@dataclass(frozen=True)
class CachedWeights:
    """One cache entry, on this machine."""
    encoder: str
    """smp encoder name, e.g. resnet18 or tu-resnet18."""
    weights: str
    """The weights name, e.g. imagenet."""
    file: Path
    """The encoder's state dict (a local copy where the cache is in a bucket)."""
    sha256: str
    """SHA-256 of `file`, recorded when it was fetched."""
    mean: tuple[float, ...]
    """Per-channel RGB mean (0..1) the weights were trained with."""
    std: tuple[float, ...]
    """Per-channel RGB std (0..1)."""
    source: str
    """Where it was downloaded from (timm model and hub id, or smp's hub repo and revision)."""


def is_weights_name(value: str) -> bool:
    """'imagenet' or 'a1_in1k' is a name; 'encoder.pt', 'weights/enc' or an existing file is a path."""
    return not ("/" in value or os.sep in value or value.lower().endswith(FILE_SUFFIXES)
                or Path(value).expanduser().is_file())


def cache_location(option: str | None, storage_path: str) -> str:
    """The weights cache of a search: the weights_cache option, else $SEGTUNE_CACHE/weights, else
    <storage_path>/weights (local paths made absolute; an s3:// URI as given)."""
    if option:
        return option if is_remote(option) else str(Path(option).expanduser().resolve())
    if os.environ.get("SEGTUNE_CACHE"):
        return str(Path(os.environ["SEGTUNE_CACHE"]).expanduser().resolve() / CACHE_FOLDER)
    if is_remote(storage_path):
        return f"{storage_path.rstrip('/')}/{CACHE_FOLDER}"
    return str(Path(storage_path).expanduser().resolve() / CACHE_FOLDER)


@functools.lru_cache(maxsize=None)
def known_weights(encoder: str) -> tuple[str, ...]:
    """The weights names smp or timm know for `encoder`; empty when it has none."""
    import segmentation_models_pytorch as smp
    import timm
    if not encoder.startswith("tu-"):
        settings = smp.encoders.encoders[encoder]["pretrained_settings"] if encoder in smp.encoders.encoders else {}
        return tuple(settings)
    architecture, _, tag = encoder.removeprefix("tu-").partition(".")
    tags = [name.partition(".")[2] for name in timm.list_pretrained(f"{architecture}.*")]
    if tag:  # the encoder names its weights itself (tu-resnet18.a1_in1k): only 'imagenet' selects them
        return (IMAGENET,) if tag in tags else ()
    return (IMAGENET, *tags) if tags else ()


def has_weights(encoder: str) -> bool:
    """Whether smp or timm know any pretrained weights for `encoder` (spaces offer `pretrained` only there)."""
    return bool(known_weights(encoder))


def _timm_model(encoder: str, weights: str) -> str:
    """The timm model name with its tag: tu-resnet18 + imagenet -> resnet18.a1_in1k (timm's default tag)."""
    from timm.models import get_pretrained_cfg
    name = encoder.removeprefix("tu-")
    if "." in name or weights != IMAGENET:
        return name if "." in name else f"{name}.{weights}"
    return f"{name}.{get_pretrained_cfg(name).tag}"


def download_encoder(encoder: str, weights: str):
    """The one place that reaches a hub: (state dict, mean, std, source) of `encoder` with `weights`, 3 input
    channels and every stage (depth 5), as smp builds and loads it (smp's hub for its own encoders, timm's for tu-)."""
    import segmentation_models_pytorch as smp
    if encoder.startswith("tu-"):
        from timm.models import get_pretrained_cfg
        model = _timm_model(encoder, weights)
        config = get_pretrained_cfg(model)
        module = smp.encoders.get_encoder(f"tu-{model}", depth=5, weights=True)
        return module.state_dict(), config.mean, config.std, f"timm {model} ({config.hf_hub_id or config.url})"
    module = smp.encoders.get_encoder(encoder, depth=5, weights=weights)
    params = smp.encoders.get_preprocessing_params(encoder, weights)
    settings = smp.encoders.encoders[encoder]["pretrained_settings"][weights]
    return module.state_dict(), params["mean"], params["std"], f"smp {settings['repo_id']}@{settings['revision']}"


def entry_location(cache: str, encoder: str, weights: str) -> str:
    """The entry's folder in the cache, a path or a URI."""
    return f"{cache.rstrip('/')}/{encoder}/{weights}"


def store_weights(folder: Path, state: dict, mean, std, source: str) -> CachedWeights:
    """Write one entry: the state dict, then weights.json, each renamed into place, so a reader sees a whole entry
    or none (the entry exists once weights.json does)."""
    import torch
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{WEIGHTS_FILE}.{os.getpid()}.partial"
    torch.save({k: v.detach().cpu() for k, v in state.items()}, partial)
    os.replace(partial, folder / WEIGHTS_FILE)
    meta = {"encoder": folder.parent.name, "weights": folder.name, "file": WEIGHTS_FILE,
            "sha256": file_sha256(folder / WEIGHTS_FILE), "mean": [float(v) for v in mean],
            "std": [float(v) for v in std], "source": source, "fetched": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    partial = folder / f".{META_FILE}.{os.getpid()}.partial"
    partial.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(partial, folder / META_FILE)
    return _entry(folder, meta)


def file_sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _entry(folder: Path, meta: dict) -> CachedWeights:
    return CachedWeights(meta["encoder"], meta["weights"], folder / meta["file"], meta["sha256"], tuple(meta["mean"]),
                         tuple(meta["std"]), meta["source"])


def cached_weights(cache: str, encoder: str, weights: str) -> CachedWeights:
    """The entry of `encoder`/`weights` on this machine (copied from the bucket first where the cache is in one);
    FileNotFoundError names the cache and the command that fills it."""
    folder = _local_folder(entry_location(cache, encoder, weights))
    if not (folder / META_FILE).is_file():
        raise FileNotFoundError(f"pretrained weights {weights!r} of {encoder} are not in the weights cache {cache}; "
                                f"fill it with: {fetch_command([encoder], weights, cache)}")
    return _entry(folder, json.loads((folder / META_FILE).read_text()))


def fetch_weights(encoder: str, weights: str, cache: str) -> CachedWeights:
    """Download `encoder`'s `weights` into the cache (uploading them where the cache is in a bucket)."""
    location = entry_location(cache, encoder, weights)
    folder = _local_folder(location, download=False)
    state, mean, std, source = download_encoder(encoder, weights)
    entry = store_weights(folder, state, mean, std, source)
    if is_remote(location):
        _upload(folder, location)
    return entry


def missing_weights(encoders: list[str], weights: str) -> dict[str, tuple[str, ...]]:
    """Encoder -> the weights names smp/timm know for it, for each encoder that has no weights `weights`."""
    known = {encoder: known_weights(encoder) for encoder in encoders}
    return {encoder: names for encoder, names in known.items() if weights not in names}


def ensure_cached(encoders: list[str], weights: str, cache: str, log=print) -> dict[str, CachedWeights]:
    """Every encoder's entry, fetching what the cache lacks; entries neither cached nor downloadable here are
    refused together (WeightsUnavailable), before any compute. Check missing_weights first."""
    entries, failures = {}, {}
    for encoder in encoders:
        try:
            entries[encoder] = _checked(cached_weights(cache, encoder, weights))
            continue
        except FileNotFoundError:
            log(f"fetching {encoder} {weights} weights into {cache}")
        try:
            entries[encoder] = fetch_weights(encoder, weights, cache)
        except Exception as error:  # noqa: BLE001 - any failure to download means the same to the user: fetch elsewhere
            failures[encoder] = error
    if failures:
        raise WeightsUnavailable(_unavailable_message(failures, weights, cache), failures)
    return entries


def describe_missing(missing: dict[str, tuple[str, ...]], weights: str) -> str:
    return "; ".join(f"{encoder} has no weights {weights!r} (smp/timm know: {', '.join(names) or 'none'})"
                     for encoder, names in missing.items())


def _checked(entry: CachedWeights) -> CachedWeights:
    """A cached file that no longer matches its recorded SHA-256 is refetched (treated as missing)."""
    if not entry.file.is_file() or file_sha256(entry.file) != entry.sha256:
        raise FileNotFoundError(f"{entry.file} does not match the SHA-256 in its {META_FILE}")
    return entry


def fetch_command(encoders: list[str], weights: str, cache: str = "DIR") -> str:
    return f"segtune weights fetch {' '.join(encoders)} --weights {weights} --to {cache}"


def _unavailable_message(failures: dict[str, Exception], weights: str, cache: str) -> str:
    first = next(iter(failures.values()))
    return (f"option encoder_weights: {weights!r} weights of {', '.join(failures)} are not in the weights cache {cache} "
            f"and could not be fetched here ({type(first).__name__}: {_first_line(first)}); nothing was started. "
            f"On a machine with internet run `{fetch_command(list(failures), weights)}`, copy DIR where every node of the cluster "
            "reads it, and point the search at it with the option weights_cache: DIR (--weights-cache DIR), or set "
            "SEGTUNE_CACHE=PARENT where DIR is PARENT/weights")


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _local_folder(location: str, download: bool = True) -> Path:
    """A local entry folder as it is; a bucket's entry mirrored under SEGTUNE_CACHE (default ~/.cache/segtune),
    its files downloaded once when `download`."""
    if not is_remote(location):
        return Path(location)
    import pyarrow.fs as pafs
    scheme, _, rest = location.partition("://")
    folder = Path(os.environ.get("SEGTUNE_CACHE", "~/.cache/segtune")).expanduser().resolve() / scheme / rest.strip("/")
    if not download or (folder / META_FILE).is_file():
        return folder
    fs, path = pafs.FileSystem.from_uri(location)
    if fs.get_file_info(f"{path}/{META_FILE}").type != pafs.FileType.File:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for name in (WEIGHTS_FILE, META_FILE):  # weights.json last: the local entry exists once it is whole
        partial = folder / f".{name}.{os.getpid()}.partial"
        pafs.copy_files(f"{path}/{name}", str(partial), source_filesystem=fs,
                        destination_filesystem=pafs.LocalFileSystem())
        os.replace(partial, folder / name)
    return folder


def _upload(folder: Path, location: str) -> None:
    import pyarrow.fs as pafs
    fs, path = pafs.FileSystem.from_uri(location)
    fs.create_dir(path, recursive=True)  # a bucket has no folders; a filesystem does
    for name in (WEIGHTS_FILE, META_FILE):  # weights.json last: other nodes see the entry once it is whole
        pafs.copy_files(str(folder / name), f"{path}/{name}", source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=fs)


def weights_of(encoder: str, encoder_weights: str, cache: str | None) -> CachedWeights:
    """The entry a trial starts `encoder` from; a weights name needs the cache the search filled."""
    if cache is None:
        raise ValueError(f"encoder_weights {encoder_weights!r} is a weights name but no weights_cache is set; "
                         f"fill one with `{fetch_command([encoder], encoder_weights)}` and set weights_cache: DIR")
    return cached_weights(cache, encoder, encoder_weights)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segtune weights", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="download encoders' pretrained weights into a cache folder")
    fetch.add_argument("encoders", nargs="+", metavar="ENCODER", help="smp encoder names: resnet18, tu-resnet18 ...")
    fetch.add_argument("--to", required=True, metavar="DIR",
                       help="the cache folder (or s3:// URI); a search reads it through weights_cache: DIR")
    fetch.add_argument("--weights", default=IMAGENET,
                       help=f"weights name (default {IMAGENET}; a timm pretrained tag such as a1_in1k for tu- encoders)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    unknown = missing_weights(args.encoders, args.weights)
    if unknown:
        raise SystemExit("segtune weights fetch: " + describe_missing(unknown, args.weights)
                         + "; check the encoder names (smp's, or tu-<timm model>) and --weights")
    cache = args.to if is_remote(args.to) else str(Path(args.to).expanduser().resolve())
    try:
        entries = ensure_cached(args.encoders, args.weights, cache)
    except WeightsUnavailable as error:
        for encoder, failure in error.failures.items():
            print(f"segtune weights fetch: {encoder} {args.weights}: could not be downloaded "
                  f"({type(failure).__name__}: {_first_line(failure)}); this needs a machine that reaches the hub "
                  "(huggingface.co)", file=sys.stderr)
        return 1
    for entry in entries.values():
        print(f"{entry.encoder} {entry.weights}: {entry.file} sha256 {entry.sha256[:16]}... from {entry.source}")
    print(f"a search reads these with the option weights_cache: {cache}")
    return 0


if __name__ == "__main__":
    from segtune.cli import run_command
    raise SystemExit(run_command(main))
