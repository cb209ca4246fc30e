"""Faults on a two-node Ray (ray.cluster_utils.Cluster on this machine) lose nothing, and the data reaches each
node once.

One Cluster (head + worker, 1 CPU each) serves the whole file. The test process never connects to it while the
killed search runs: that search's driver is a subprocess (search/run.py --ray-address), killed with SIGKILL and
resumed with --resume. The search with MLflow unreachable runs in this process (its driver), so that it can record
what every trial was given: see `recording_trainable`.
"""

import contextlib
import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import ray
from ray.cluster_utils import Cluster
from ray.tune.registry import _ParameterRegistry

import search.driver
from mlflow_runs import UNREACHABLE, assert_logged_like, logged_runs
from search import load_config, run_search
from search.driver import load_searcher
from search.replay import main as replay_main
from search.run import SMOKE_TEST
from segtune import names
from segtune.paths import experiment_paths

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        ray.shutdown()  # the session's single-node Ray; its search is already finished and cached
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        yield SimpleNamespace(cluster=cluster, head=cluster.head_node.node_id, worker=worker.node_id)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


def wait_until_whole_and_idle(cluster: Cluster, timeout: float = 90) -> float:
    """Every driver's job marked dead, both nodes alive and both CPUs free again (what the dead driver's trial actors
    held is released), read from the GCS without connecting a driver; returns the seconds it took."""
    start = time.time()
    while True:
        jobs = cluster.global_state.job_table()
        alive = [n for n in cluster.global_state.node_table() if n["Alive"]]
        free = cluster.global_state.available_resources_per_node()
        cpus = sum(resources.get("CPU", 0) for resources in free.values())
        if all(job["IsDead"] for job in jobs) and len(alive) == 2 and cpus == 2:
            return time.time() - start
        assert time.time() - start < timeout, f"cluster not whole and idle: {len(alive)} nodes alive, {free}, {jobs}"
        time.sleep(0.5)


def trial_history(experiment: Path) -> dict[str, list[tuple[str, int]]]:
    """trial id -> [(node id, epoch)] for every result line of every trial, in order."""
    seen = {}
    for result in sorted(experiment.glob("trial_*/result.json")):
        lines = [json.loads(line) for line in result.read_text().splitlines()]
        seen[result.parent.name.removeprefix("trial_")] = [(r[names.NODE_ID], r[names.EPOCH]) for r in lines]
    return seen


def trial_statuses(experiment: Path) -> dict[str, str]:
    """trial id -> status in Ray Tune's latest saved experiment state."""
    state_file = max(experiment.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    trials = [json.loads(trial_json) for trial_json, _ in json.loads(state_file.read_text())["trial_data"]]
    return {trial["trial_id"]: trial["status"] for trial in trials}


def csv_rows(path: Path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def printed_by(lines: list[str]) -> set[tuple[str, int]]:
    """(trial id, epoch) of every progress line a driver printed: '[<trial> epoch <n>/<max>] ...'."""
    return {(line[1:].split(" epoch ")[0], int(line.split(" epoch ")[1].split("/")[0]))
            for line in lines if line.startswith("[") and " epoch " in line}


def describe(history: dict, node_names: dict, statuses_at_kill: dict | None = None) -> str:
    """One line per trial for the test log: its epochs with their node (and its status when the driver died)."""
    lines = []
    for trial, epochs in history.items():
        line = f"  {trial}: " + " ".join(f"e{epoch}@{node_names.get(node, node[:8])}" for node, epoch in epochs)
        if statuses_at_kill is not None:
            line += f"  (in the state saved before the kill: {statuses_at_kill.get(trial, 'absent')})"
        lines.append(line)
    return "\n".join(lines)


# --- (c) the driver killed with SIGKILL mid-search ------------------------------------------------------------------

def test_driver_killed_mid_search_on_two_nodes_resumes_and_loses_nothing(cluster, tmp_path):
    """SIGKILL to the driver, then --resume on the same cluster. Ray Tune resumes from the experiment state it saved
    last: trials finished there are not trained again, trials running there go on from their last checkpoint in it
    (an epoch done after that snapshot is trained again), and a trial started after it is dropped and replaced."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    where = ["--name", "killed", "--storage-path", str(tmp_path), "--ray-address", cluster.cluster.address]
    # grace period = max epochs: ASHA stops nothing, so every trial must end with exactly epochs 1 and 2
    args = [sys.executable, str(ROOT / "search" / "run.py"), "--smoke-test", "--num-samples", "5",
            "--grace-period", "2", "--tracking-uri", uri, *where]
    driver = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    seen = []
    threading.Thread(target=lambda: seen.extend(driver.stdout), daemon=True).start()
    experiment, deadline = tmp_path / "killed", time.time() + 300
    # Resuming starts from the experiment state Ray Tune saved last (it snapshots every few seconds, and after a
    # trial's num_to_keep checkpoints). Kill once that state holds two finished trials and one running, i.e.
    # mid-search, preferably when the driver has printed an epoch that is not on disk yet (work since the last
    # snapshot: the hard case for a resume); after 5 s without one, kill anyway.
    ready_since = None
    while time.time() < deadline and driver.poll() is None:
        try:
            saved, on_disk = list(trial_statuses(experiment).values()), trial_history(experiment)
        except (ValueError, OSError, KeyError):  # not written yet, or caught mid-write
            saved, on_disk = [], {}
        printed = printed_by(list(seen))
        ahead = {(trial, epoch) for trial, epoch in printed if epoch not in [e for _, e in on_disk.get(trial, [])]}
        if saved.count("TERMINATED") >= 2 and "RUNNING" in saved:
            ready_since = ready_since or time.time()
            if ahead or time.time() - ready_since > 5:
                break
        time.sleep(0.1)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    printed = printed_by(seen)
    statuses_at_kill = trial_statuses(experiment)  # the state Tune saved last, as the resume will read it
    before = trial_history(experiment)
    result_files = {trial: (experiment / f"trial_{trial}" / "result.json").read_bytes() for trial in before}
    finished = [trial for trial, status in statuses_at_kill.items() if status == "TERMINATED"]
    assert len(finished) >= 2 and "RUNNING" in statuses_at_kill.values(), "".join(seen)
    # Ray ended the dead driver's trial actors; the cluster is whole and idle again before the resume
    recovered_s = wait_until_whole_and_idle(cluster.cluster)

    resumed = subprocess.run([*args[:2], "--resume", *where], env=env, capture_output=True, text=True,
                             cwd=tmp_path, timeout=400)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    node_names = {cluster.head: "head", cluster.worker: "worker"}
    rows = csv_rows(experiment / "segtune" / "leaderboard.csv")
    ids = {r["trial_id"] for r in rows}
    after = {trial: history for trial, history in trial_history(experiment).items() if trial in ids}
    dropped = {p.name.removeprefix("trial_") for p in experiment.glob("trial_*")} - ids
    print(f"\nkilled driver; cluster whole and idle {recovered_s:.1f}s later; per trial (epoch@node):\n"
          + describe(after, node_names, statuses_at_kill)
          + f"\nstarted after the last snapshot and dropped by the resume: {sorted(dropped) or 'none'}"
          + f"\nprinted by the killed driver but not on disk at the kill: {sorted(ahead) or 'none'}\nkilled driver:\n"
          + "".join(line for line in seen if line.startswith("["))
          + "resumed driver:\n" + "".join(line + "\n" for line in resumed.stdout.splitlines() if line.startswith("[")))

    assert len(rows) == 5 and all(r["outcome"] == "completed" and int(r["epochs"]) == 2 for r in rows), rows
    assert set(after) == ids and not dropped & set(statuses_at_kill)
    for trial in finished:  # a trial finished in the saved state was not trained again
        assert (experiment / f"trial_{trial}" / "result.json").read_bytes() == result_files[trial]
    for trial, history in after.items():  # nothing lost: every trial has both epochs and ends with the last
        assert sorted({epoch for _, epoch in history}) == [1, 2] and history[-1][1] == 2, (trial, history)
    # an epoch trained twice is one done after the last snapshot, redone from the checkpoint that snapshot had
    redone = {trial: len(history) - 2 for trial, history in after.items() if len(history) > 2}
    assert not set(redone) & set(finished)
    assert {node for history in after.values() for node, _ in history} == {cluster.head, cluster.worker}

    searcher = load_searcher(experiment_paths(str(tmp_path), "killed"), max_epochs=2)
    assert searcher is not None  # the study from before the kill was restored: it holds exactly the 5 trials
    assert all(t.state.name == "COMPLETE" for t in searcher.study.trials)
    assert sorted(json.dumps(t.params, sort_keys=True) for t in searcher.study.trials) == \
        sorted(json.dumps(json.loads(r["params"]), sort_keys=True) for r in rows)

    client, runs, parents, children = logged_runs(uri)
    by_trial = {c.data.tags[names.TAG_TRIAL_ID]: c for c in children}
    steps = {trial: [m.step for m in client.get_metric_history(c.info.run_id, names.VAL_MIOU)]
             for trial, c in by_trial.items()}
    print("\n".join(f"  MLflow child {trial}: {c.info.status} {c.data.tags.get(names.TAG_OUTCOME)}, "
                    f"val_miou at steps {steps[trial]}" for trial, c in by_trial.items())
          + f"\n  epochs twice in result.json: {redone or 'none'}; epochs printed by both drivers (trained twice): "
          + f"{sorted(printed & printed_by(resumed.stdout.splitlines())) or 'none'}")
    assert not [r for r in runs if r.info.status == "RUNNING"] and len(parents) == 1 and len(children) == len(by_trial)
    for trial in ids:
        assert by_trial[trial].info.status == "FINISHED" and sorted(set(steps[trial])) == [1, 2]
    for trial in set(by_trial) - ids:  # a dropped trial's child run is closed as interrupted
        assert trial not in statuses_at_kill
        assert by_trial[trial].info.status == "KILLED" and by_trial[trial].data.tags[names.TAG_OUTCOME] == "interrupted"

# --- (d) MLflow unreachable, and (a) what each trial was given ------------------------------------------------------

def recording_trainable(folder: str):
    """train_segmentation, but each call first records in `folder` how the trial got its data.

    tune.with_parameters puts `data` in the object store once (the driver owns it) and each trial ray.get()s it. For
    every image and mask the record says whether the array is read-only and lies in the node's shared-memory object
    store (the plasma file mapped into this process, from /proc/self/maps) - a zero-copy view, not an array read,
    generated or unpickled by the trial - and which objects the trial's process holds references to.
    Pickled by value (a closure), so Ray's workers need not import this test module.
    """
    def train_segmentation(config, data, splits, fixed):
        import json as json_
        import os as os_
        import ray as ray_
        import time as time_
        from ray import tune as tune_
        from trainables import train_segmentation as train

        mappings = []
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.split()
                low, high = (int(x, 16) for x in parts[0].split("-"))
                mappings.append((low, high, int(parts[2], 16), parts[4], parts[5] if len(parts) > 5 else ""))

        def where(array):
            address = array.__array_interface__["data"][0]
            low, _, offset, inode, path = next(m for m in mappings if m[0] <= address < m[1])
            return {"file": path, "inode": inode, "offset": offset + address - low}

        arrays = list(data.images) + list(data.masks)
        buffers = [where(a) for a in arrays]
        base = data.images[0]
        while getattr(base, "base", None) is not None:
            base = base.base
        held = ray_._private.worker.global_worker.core_worker.get_all_reference_counts()
        record = {
            "trial_id": tune_.get_context().get_trial_id(), "node_id": ray_.get_runtime_context().get_node_id(),
            "pid": os_.getpid(), "arrays": len(arrays), "read_only": sum(not a.flags.writeable for a in arrays),
            "in_object_store": sum("plasma" in b["file"] for b in buffers),
            "store_files": sorted({b["inode"] for b in buffers}), "first_image": buffers[0],
            "base_type": f"{type(base).__module__}.{type(base).__name__}",
            "object_refs": sorted(k.decode() if isinstance(k, bytes) else str(k) for k in held),
        }
        with open(os_.path.join(folder, f"{record['trial_id']}-{record['pid']}-{time_.time_ns()}.json"), "w") as out:
            json_.dump(record, out)
        return train(config, data, splits, fixed)

    return train_segmentation


@pytest.fixture(scope="module")
def offline_search(cluster, tmp_path_factory):
    """A smoke search driven from this process on the two nodes, MLflow unreachable; the data's object reference
    and its locations are read before this driver disconnects (its objects go with it)."""
    folder = tmp_path_factory.mktemp("offline")
    (records := folder / "records").mkdir()
    recording = recording_trainable(str(records))
    patch = pytest.MonkeyPatch()
    patch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    patch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    cfg = load_config(None, {**SMOKE_TEST, "name": "offline", "storage_path": str(folder),
                             "ray_address": cluster.cluster.address, "tracking_uri": UNREACHABLE})
    output = io.StringIO()
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(output):
            warnings.simplefilter("always")
            outcome = run_search(cfg, trainable=recording)
        # the parameter registry tune.with_parameters made for this search: it holds the refs it put
        registry = [hook.__self__ for hook in ray._private.worker._post_init_hooks
                    if isinstance(getattr(hook, "__self__", None), _ParameterRegistry)
                    and f"{recording}_data" in hook.__self__.references][-1]
        refs = {key.removeprefix(f"{recording}_"): ref for key, ref in registry.references.items()}
        locations = ray.experimental.get_object_locations(list(refs.values()))
    finally:
        ray.shutdown()
        patch.undo()
    yield SimpleNamespace(cfg=cfg, outcome=outcome, output=output.getvalue(), warnings=[str(w.message) for w in caught],
                          refs={k: r.hex() for k, r in refs.items()},
                          locations={k: locations[r] for k, r in refs.items()},
                          records=[json.loads(p.read_text()) for p in sorted(records.glob("*.json"))])


def test_search_with_mlflow_unreachable_on_two_nodes_completes_warns_once_and_is_logged_later(cluster, offline_search):
    cfg, outcome = offline_search.cfg, offline_search.outcome
    history = trial_history(outcome.paths.root)
    print("\nMLflow unreachable; per trial (epoch@node) and outcome:\n"
          + describe(history, {cluster.head: "head", cluster.worker: "worker"}) + "\n"
          + "\n".join(f"  {r.trial_id}: {r.outcome} after {r.epochs} epoch(s)" for r in outcome.leaderboard))
    failures = [w for w in offline_search.warnings if w.startswith(f"MLflow logging to {UNREACHABLE} failed")]
    assert len(failures) == 1, offline_search.warnings
    assert "could not be reached during the search" in offline_search.output
    assert "segtune mlflow" in offline_search.output
    assert len(outcome.leaderboard) == cfg.num_samples
    assert not [r for r in outcome.leaderboard if r.outcome == "failed"]
    assert {node for epochs in history.values() for node, _ in epochs} == {cluster.head, cluster.worker}

    uri = f"sqlite:///{outcome.paths.root.parent}/later.db"
    assert replay_main([str(outcome.paths.root), "--tracking-uri", uri]) == 0
    _, _, by_trial = assert_logged_like(uri, outcome.leaderboard)
    assert len(by_trial) == cfg.num_samples


def test_the_data_reaches_each_node_once_and_trials_read_it_zero_copy_from_the_object_store(cluster, offline_search):
    records, data_ref = offline_search.records, offline_search.refs["data"]
    trials_by_node = {}
    for record in records:
        trials_by_node.setdefault(record["node_id"], set()).add(record["trial_id"])
    print(f"\ndata object {data_ref}: {offline_search.locations['data']}\n" + "\n".join(
        f"  trial {r['trial_id']} pid {r['pid']} on {'head' if r['node_id'] == cluster.head else 'worker'}: "
        f"{r['read_only']}/{r['arrays']} arrays read-only, {r['in_object_store']} in the object store, "
        f"store file inode {r['store_files']}, first image at offset {r['first_image']['offset']}" for r in records))
    assert {r["trial_id"] for r in records} == {r.trial_id for r in offline_search.outcome.leaderboard}
    assert set(trials_by_node) == {cluster.head, cluster.worker}
    assert max(len(trials) for trials in trials_by_node.values()) >= 2  # more trials than nodes on a node

    # every trial read the one object the driver put, none a copy of its own
    assert all(data_ref in r["object_refs"] for r in records)
    # ... as zero-copy, read-only views into its node's shared-memory object store, not arrays of its own
    assert all(r["read_only"] == r["arrays"] == r["in_object_store"] and len(r["store_files"]) == 1 for r in records)
    assert all(r["base_type"] == "ray._raylet.SubBuffer" for r in records)
    # one copy per node: the object is in exactly the two nodes' stores, and all trials of a node read the same bytes
    # (one store file and offset per node), the two nodes different ones
    assert set(offline_search.locations["data"]["node_ids"]) == {cluster.head, cluster.worker}
    copies = {node: {(r["first_image"]["inode"], r["first_image"]["offset"]) for r in records if r["node_id"] == node}
              for node in trials_by_node}
    assert all(len(places) == 1 for places in copies.values()), copies
    assert len({inode for places in copies.values() for inode, _ in places}) == 2


def test_a_search_without_ray_address_starts_its_own_ray_rather_than_joining_one_running_here(cluster):
    """ray.init() with no address joins a cluster started on this machine (as the one of this file); a search
    without ray_address must not: it would land its trials on someone else's cluster."""
    if ray.is_initialized():
        ray.shutdown()
    try:
        search.cluster.start_ray(load_config(None, {}))
        assert ray.get_runtime_context().gcs_address != cluster.cluster.address
        assert len(ray.nodes()) == 1
    finally:
        ray.shutdown()
