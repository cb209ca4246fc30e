"""Every command that may start Ray or MLflow runs offline and quiet unless the user says otherwise."""

import importlib
import os

import pytest

from segtune.cli import QUIET_DEFAULTS


@pytest.mark.parametrize("module", ["ensembles.run", "search.replay"])
def test_command_sets_the_quiet_defaults_before_work(module, monkeypatch):
    for key in QUIET_DEFAULTS:
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(SystemExit) as stop:
        importlib.import_module(module).main(["--help"])
    assert stop.value.code == 0
    assert {key: os.environ.get(key) for key in QUIET_DEFAULTS} == QUIET_DEFAULTS
    # among them the per-epoch snapshot warning that flooded `segtune ensemble --refit-folds`
    assert os.environ["TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S"] == "0"


def test_a_users_own_setting_wins(monkeypatch):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "1")
    with pytest.raises(SystemExit):
        importlib.import_module("ensembles.run").main(["--help"])
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "1"
