"""storage_path s3://: a search killed and resumed, replayed into MLflow and ensembled, all from a bucket.

The bucket is moto's S3-compatible server on 127.0.0.1, reached through AWS_ENDPOINT_URL as any
S3-compatible store would be; nothing but the bucket and segtune's working copy (SEGTUNE_CACHE) is written.
"""

import csv
import io
import socket
import subprocess
import sys
import time
import urllib.request

import boto3
import pytest
from mlflow.tracking import MlflowClient

from drivers import kill_once_trials_finished, run_driver
from ensembles.run import main as ensemble_main
from search.driver import latest_experiment, load_searcher
from search.experiment import open_experiment
from search.replay import main as replay_main
from segtune import storage
from segtune.paths import experiment_paths

pytestmark = pytest.mark.slow
BUCKET = "segtune-runs"
STORAGE = f"s3://{BUCKET}/results"


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "SEGTUNE_CACHE": str(tmp_path_factory.mktemp("cache"))}
    patch = pytest.MonkeyPatch()
    for key, value in env.items():
        patch.setenv(key, value)
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    yield env, client
    patch.undo()
    server.terminate()
    server.wait()


def objects(client, prefix: str) -> dict[str, bytes]:
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
            for o in page.get("Contents", [])]
    return {key.removeprefix(prefix): key for key in keys}


def read(client, key: str) -> str:
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()


@pytest.fixture(scope="module")
def resumed_s3_search(s3_server, tmp_path_factory):
    env, client = s3_server
    workdir = tmp_path_factory.mktemp("s3_search")
    uri = f"sqlite:///{workdir}/mlflow.db"
    args = ["--smoke-test", "--num-samples", "5", "--max-concurrent-trials", "1", "--name", "s3search",
            "--storage-path", STORAGE, "--tracking-uri", uri]
    prefix = "results/s3search/"

    def names():  # the experiment's files in the bucket, relative to it
        return list(objects(client, prefix))

    def read_bytes(name):
        try:
            return client.get_object(Bucket=BUCKET, Key=prefix + name)["Body"].read()
        except client.exceptions.NoSuchKey:
            return None

    output, statuses = kill_once_trials_finished(args, workdir, names, read_bytes, env)
    finished_before = {f"trial_{trial}": read(client, f"{prefix}trial_{trial}/result.json")
                       for trial, status in statuses.items() if status == "TERMINATED"}
    assert 2 <= len(finished_before) < 5, output  # killed mid-search, with finished trials the resume must keep
    resumed = run_driver(["--resume", "--name", "s3search", "--storage-path", STORAGE], workdir, env)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    return workdir, uri, client, prefix, finished_before


def test_a_killed_search_resumes_from_the_bucket_without_rerunning_finished_trials(resumed_s3_search):
    workdir, uri, client, prefix, finished_before = resumed_s3_search
    stored = objects(client, prefix)
    rows = list(csv.DictReader(io.StringIO(read(client, prefix + "segtune/leaderboard.csv"))))
    assert len(rows) == 5 and all(r["outcome"] != "failed" for r in rows)
    assert all(r["checkpoint"].startswith(f"{STORAGE}/s3search/trial_") for r in rows)
    for row in rows:  # every trial's best checkpoint is in the bucket
        assert row["checkpoint"].removeprefix(f"s3://{BUCKET}/{prefix}") + "/checkpoint.pt" in stored
    assert {"segtune/search_config.yaml", "segtune/splits.json", "segtune/mlflow_parent_run_id.txt",
            "segtune/plots/optimisation_history.png", "segtune/plots/best_trial_predictions.png"} <= set(stored)
    for trial, results in finished_before.items():  # a trial that had finished was not trained again
        assert read(client, f"{prefix}{trial}/result.json") == results
        row = next(r for r in rows if f"trial_{r['trial_id']}" == trial)
        assert int(row["epochs"]) == results.count("\n")
    assert not (workdir / "segtune_results").exists() and not (workdir / "s3search").exists()
    searcher = load_searcher(experiment_paths(STORAGE, "s3search"), max_epochs=2)
    assert len(searcher.study.trials) == 5  # the Optuna study was restored from the bucket, not restarted
    client_ml = MlflowClient(uri)
    runs = client_ml.search_runs([client_ml.get_experiment_by_name("segtune").experiment_id])
    assert not [r for r in runs if r.info.status == "RUNNING"]


def test_replay_and_ensemble_read_the_experiment_from_the_bucket(resumed_s3_search, tmp_path, monkeypatch):
    _, _, client, prefix, _ = resumed_s3_search
    monkeypatch.setenv("SEGTUNE_CACHE", str(tmp_path / "fresh_cache"))  # another machine: nothing cached
    experiment = f"{STORAGE}/s3search"
    other = f"sqlite:///{tmp_path}/other.db"
    assert replay_main([experiment, "--tracking-uri", other, "--force"]) == 0
    client_ml = MlflowClient(other)
    runs = client_ml.search_runs([client_ml.get_experiment_by_name("segtune").experiment_id])
    assert len(runs) == 1 + 5 and not [r for r in runs if r.info.status == "RUNNING"]

    assert ensemble_main([experiment, "--top-k", "2", "--folds", "2", "--candidates", "best_single,mean",
                          "--no-register", "--tracking-uri", other]) == 0
    stored = objects(client, prefix + "segtune/ensemble/")
    assert {"report.json", "bundle/manifest.json", "bundle/model.onnx"} <= set(stored)
    # the bucket now holds the ensemble: a third machine opening the experiment gets it
    monkeypatch.setenv("SEGTUNE_CACHE", str(tmp_path / "third_cache"))
    assert (open_experiment(experiment).segtune / "ensemble" / "bundle" / "manifest.json").is_file()


def test_a_missing_bucket_or_an_unknown_scheme_is_refused_before_any_compute(s3_server, tmp_path):
    with pytest.raises(FileNotFoundError, match="bucket no-such-bucket does not exist"):
        storage.pull(experiment_paths("s3://no-such-bucket/results", "x"))
    with pytest.raises(ValueError, match="storage_path gs://b: use a local or shared folder, or s3://"):
        experiment_paths("gs://b", "x")
    with pytest.raises(ValueError, match="pass --name"):  # no "latest experiment" lookup in a bucket
        latest_experiment(STORAGE)
    done = run_driver(["--smoke-test", "--storage-path", "s3://no-such-bucket/r", "--tracking-uri",
                       f"sqlite:///{tmp_path}/m.db"], tmp_path, s3_server[0], timeout=120)
    assert done.returncode != 0 and "bucket no-such-bucket does not exist" in done.stdout + done.stderr
    assert "epoch 1/" not in done.stdout
