"""Run a hyperparameter search.

    python search/run.py                                  # the embedded synthetic default, local Ray
    python search/run.py --smoke-test                     # the whole path in well under a minute
    python search/run.py --config my.yaml --num-samples 24
    python search/run.py --resume                         # continue the latest interrupted search

Every option of the YAML config is also a flag (--num-samples, --max-epochs ...); flags win.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from pathlib import Path

import yaml

if __package__ in (None, ""):  # run as a script: make the project importable without an install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search.config import SearchConfig, field_docs, load_config  # noqa: E402
from segtune.cli import EXIT_FAILED, EXIT_REFUSED, run_command, set_quiet_defaults  # noqa: E402
from segtune.inspect.run import colour_map_argument  # noqa: E402

set_quiet_defaults()

SMOKE_TEST = {"space": "smoke", "num_samples": 4, "max_epochs": 2, "grace_period": 1, "n_startup_trials": 2,
              "max_concurrent_trials": 2, "steps_per_epoch": 3, "crop": (64, 64)}
"""Overrides for --smoke-test: tiny models, 4 trials of at most 2 short epochs."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segtune search", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file of options (see README); flags below override it")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted search (--name, else the latest under --storage-path)")
    parser.add_argument("--smoke-test", action="store_true", help="a tiny search that checks the whole path quickly")
    docs, hints = field_docs(), typing.get_type_hints(SearchConfig)
    for field in dataclasses.fields(SearchConfig):
        flag = "--" + field.name.replace("_", "-")
        kind = _argument_type(hints[field.name])
        default_text = f" (default: {field.default})"
        if kind is dict:
            kind = _parse_overrides if field.name == "space_overrides" else colour_map_argument
        parser.add_argument(flag, type=kind, default=None, help=docs.get(field.name, "") + default_text)
    return parser


def _argument_type(hint):
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    base = [a for a in typing.get_args(hint) if a is not type(None)] if is_union else [hint]
    origin = typing.get_origin(base[0]) or base[0]
    return {tuple: str, dict: dict, bool: _parse_bool}.get(origin, origin)


def _parse_bool(text: str) -> bool:
    """--mixed-precision false (argparse's bool() would read any word, 'false' included, as True)."""
    value = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(text.strip().lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not true or false")
    return value


def _parse_overrides(text: str) -> dict:
    """'{lr: {low: 1.0e-4, high: 1.0e-2}, architecture: [Unet, FPN]}': a YAML mapping, as in a config file."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is not a YAML mapping such as "
                                         "'{lr: {low: 1.0e-4, high: 1.0e-2}, architecture: [Unet, FPN]}'")
    return value


def parse_config(argv: list[str] | None = None) -> tuple[SearchConfig, bool]:
    args = vars(build_parser().parse_args(argv))
    config_file, resume, smoke = args.pop("config"), args.pop("resume"), args.pop("smoke_test")
    overrides = {**(SMOKE_TEST if smoke else {}), **{k: v for k, v in args.items() if v is not None}}
    try:
        return load_config(config_file, overrides), resume
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"segtune search: {error}") from None


def main(argv: list[str] | None = None) -> int:
    cfg, resume = parse_config(argv)
    from search.driver import run_search  # heavy imports only after the arguments are known good
    from segtune.data import DataError
    try:
        outcome = run_search(cfg, resume=resume)
    except (DataError, FileExistsError, FileNotFoundError, ValueError, KeyError, ConnectionError) as error:
        print(f"segtune search: {error}", file=sys.stderr)
        return EXIT_REFUSED
    return 0 if outcome.best else EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(run_command(main))
