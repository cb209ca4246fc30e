"""MLflow down during a search: the search completes, says so once, and `segtune mlflow` logs it later."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_runs import UNREACHABLE, assert_logged_like, logged_runs
from search.replay import main as replay_main
from segtune import names

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_replay_logs_a_finished_search_like_live_logging(finished_search, tmp_path):
    cfg, outcome, _ = finished_search
    experiment = tmp_path / "copy"
    shutil.copytree(outcome.paths.root, experiment)  # the shared search's own parent id stays untouched
    uri = f"sqlite:///{tmp_path}/replayed.db"
    assert replay_main([str(experiment), "--tracking-uri", uri]) == 0
    client, parents, by_trial = assert_logged_like(uri, outcome.leaderboard)
    assert len(by_trial) == cfg.num_samples
    for row in outcome.leaderboard:
        if row.outcome == "failed":
            assert "no_such_encoder" in by_trial[row.trial_id].data.tags[names.TAG_ERROR]
    assert {"search_config.yaml", "leaderboard.csv", "plots"} <= {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    with pytest.raises(SystemExit, match="already logged"):
        replay_main([str(experiment), "--tracking-uri", uri])


def test_search_with_mlflow_unreachable_completes_warns_once_and_is_logged_later(tmp_path, capsys):
    # a password in the tracking URI is masked everywhere: output, experiment folder (Ray's pickles too), MLflow
    secret, uri = "s3cret-pw", UNREACHABLE.replace("//", "//segtune:s3cret-pw@")
    masked = uri.replace(secret, "***")
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    done = subprocess.run([sys.executable, str(ROOT / "search" / "run.py"), "--smoke-test", "--name", "offline",
                           "--storage-path", str(tmp_path), "--tracking-uri", uri],
                          env=env, capture_output=True, text=True, cwd=tmp_path, timeout=400)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert output.count(f"MLflow logging to {masked} failed") == 1
    assert "could not be reached during the search" in output and "segtune mlflow" in output
    experiment = tmp_path / "offline"
    assert len((experiment / "segtune" / "leaderboard.csv").read_text().strip().splitlines()) == 1 + 4
    saved = [p for p in experiment.rglob("*") if p.is_file()]
    assert any(p.name.startswith("experiment_state") for p in saved) and any(p.suffix == ".pkl" for p in saved)
    assert [p for p in saved if secret.encode() in p.read_bytes()] == [] and secret not in output
    with pytest.raises(SystemExit, match="logging to http://segtune:\\*\\*\\*@") as refused:  # the saved store, still down
        replay_main([str(experiment)])
    assert secret not in str(refused.value) + "".join(map(str, capsys.readouterr()))
    later = f"sqlite:///{tmp_path}/later.db"
    assert replay_main([str(experiment), "--tracking-uri", later]) == 0
    _, runs, parents, children = logged_runs(later)
    assert len(parents) == 1 and len(children) == 4 and not [r for r in runs if r.info.status == "RUNNING"]
    assert parents[0].data.params["tracking_uri"] == masked and secret.encode() not in (tmp_path / "later.db").read_bytes()
