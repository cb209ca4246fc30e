"""The `segtune` command: `segtune search ...` is `python search/run.py ...`; `segtune inspect DATA` reports on data;
`segtune init DATA` writes a starting search config for it;
`segtune ensemble EXPERIMENT` stacks a search's best trials into a bundle; `segtune predict BUNDLE INPUT OUTPUT`
segments images with it; `segtune weights fetch ENCODER... --to DIR` fills a pretrained-weights cache.

Exit codes, the same for every command: 0 done; 1 the run failed (no trial of a search finished, an image could
not be predicted) or crashed (an uncaught exception, printed with its traceback); 2 bad input or config, refused
with one message before any work (argparse's code for a bad command line).
"""

from __future__ import annotations

import os
import sys

QUIET_DEFAULTS = {"NO_ALBUMENTATIONS_UPDATE": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "RAY_USAGE_STATS_ENABLED": "0",
                  # keeping only the best checkpoints forces a state snapshot per epoch; that is intended
                  "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}
"""Offline and quiet by default, for every command that may start Ray or MLflow; a user's own setting wins."""


def set_quiet_defaults() -> None:
    for key, value in QUIET_DEFAULTS.items():
        os.environ.setdefault(key, value)


COMMANDS = {"search": "search.run", "inspect": "segtune.inspect.run", "init": "search.starting_config",
            "ensemble": "ensembles.run",
            "predict": "ensembles.predict", "mlflow": "search.replay", "weights": "segtune.weights"}
EXIT_FAILED = 1
"""The run failed or crashed."""
EXIT_REFUSED = 2
"""Bad input or config, refused before any work."""


def run_command(main, argv: list[str] | None = None) -> int:
    """A command's exit code: a SystemExit that carries a message is a refusal (print it, exit 2)."""
    try:
        return main(argv)
    except SystemExit as stop:
        if not isinstance(stop.code, str):
            raise
        print(stop.code, file=sys.stderr)
        return EXIT_REFUSED


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--version":
        from importlib.metadata import version
        print(f"segtune {version('segtune')}")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: segtune {" + ",".join(COMMANDS) + "} [options]\n  search   run a hyperparameter search "
              "(segtune search --help)\n  inspect  report on a dataset before searching (segtune inspect --help)"
              "\n  init     write a starting search config for a dataset (segtune init --help)"
              "\n  ensemble stack a finished search's best trials and export a bundle (segtune ensemble --help)"
              "\n  predict  segment images with an exported ensemble bundle (segtune predict --help)"
              "\n  weights  fetch pretrained encoder weights into a cache folder (segtune weights fetch --help)"
              "\n  mlflow   log a search to MLflow from its folder, e.g. after the store was down (segtune mlflow --help)"
              "\n  --version print the version",
              file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else EXIT_REFUSED
    import importlib
    return run_command(importlib.import_module(COMMANDS[argv[0]]).main, argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
