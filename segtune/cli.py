"""The `segtune` command: `segtune search ...` is `python search/run.py ...`; `segtune inspect DATA` reports on data;
`segtune ensemble EXPERIMENT` stacks a search's best trials into a bundle; `segtune predict BUNDLE INPUT OUTPUT`
segments images with it."""

from __future__ import annotations

import sys

COMMANDS = {"search": "search.run", "inspect": "segtune.inspect.run", "ensemble": "ensembles.run",
            "predict": "ensembles.predict", "mlflow": "search.replay"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: segtune {" + ",".join(COMMANDS) + "} [options]\n  search   run a hyperparameter search "
              "(segtune search --help)\n  inspect  report on a dataset before searching (segtune inspect --help)"
              "\n  ensemble stack a finished search's best trials and export a bundle (segtune ensemble --help)"
              "\n  predict  segment images with an exported ensemble bundle (segtune predict --help)"
              "\n  mlflow   log a search to MLflow from its folder, e.g. after the store was down (segtune mlflow --help)",
              file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    import importlib
    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
