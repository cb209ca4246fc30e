"""Ray for a search: start or join it before anything is written, and check that a trial fits on some node.

    start_ray(cfg)                        # a local Ray on 127.0.0.1, or the cluster at cfg.ray_address
    check_trial_fits(cfg, cluster_nodes())
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from unittest import mock

import ray
import yaml
from ray._private import ray_constants, services as ray_services  # Ray is pinned (pyproject.toml)

from search.config import SearchConfig


EXPERIMENT_SNAPSHOT_S = 2
"""How often Ray Tune saves the experiment state that --resume starts from (Ray's own default is every
10 s or more). Work done after the last snapshot is redone on resume; the snapshot is small (KBs per trial)."""


RAY_CONNECT_TIMEOUT_S = 30
"""How long a search waits for the Ray cluster at ray_address to answer (env SEGTUNE_RAY_CONNECT_TIMEOUT_S)."""


def start_ray(cfg: SearchConfig) -> None:
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", str(EXPERIMENT_SNAPSHOT_S))  # read when the Tuner runs
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if cfg.ray_address:
        _wait_for_cluster(cfg.ray_address, float(os.environ.get("SEGTUNE_RAY_CONNECT_TIMEOUT_S", RAY_CONNECT_TIMEOUT_S)))
        ray.init(address=cfg.ray_address, log_to_driver=False)
        return
    # "local": a Ray of our own, never a cluster someone started on this machine (plain ray.init() joins one).
    # It listens on 127.0.0.1 only: Ray binds to the machine's network address unless it runs single-node
    # (its macOS/Windows default, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, read once when ray is imported).
    with mock.patch.object(ray_constants, "ENABLE_RAY_CLUSTER", False):
        ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False)


def _wait_for_cluster(address: str, timeout_s: float) -> None:
    """Before anything is written: the Ray head at `address` answers (Ray itself would retry for minutes)."""
    advice = (f"check --ray-address / ray_address {address!r}: host:port of a running Ray head (`ray start --head` "
              "prints it; 'auto' on the head itself), or leave it unset for a local Ray. Nothing was written; "
              "run the same command again once the cluster is up")
    try:
        resolved = ray_services.canonicalize_bootstrap_address_or_die(address.removeprefix("ray://"))
        host, port = ray_services.extract_ip_port(resolved)
    except (ValueError, ConnectionError) as error:
        raise ConnectionError(f"Ray cluster not found ({error}); {advice}") from None
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host, port), timeout=max(0.1, min(5.0, deadline - time.monotonic()))).close()
            return
        except OSError as error:
            if isinstance(error, socket.gaierror):  # an unknown host stays unknown: no point waiting
                raise ConnectionError(f"Ray head {host}:{port}: {error}; {advice}") from None
            if time.monotonic() >= deadline:
                raise ConnectionError(f"no Ray cluster answered at {host}:{port} within {timeout_s:g} s ({error}; "
                                      f"SEGTUNE_RAY_CONNECT_TIMEOUT_S waits longer); {advice}") from None
            time.sleep(0.5)


def check_trial_fits(cfg: SearchConfig, nodes: list[dict] | None) -> None:
    """Refuse a trial that no node can hold (a trial takes its CPUs and GPUs from one node); None: unknown."""
    if nodes is None:
        return
    where = f"the Ray cluster at {cfg.ray_address}" if cfg.ray_address else "this machine"
    most_gpus = max(node.get("GPU", 0) for node in nodes)
    if cfg.gpus_per_trial > most_gpus:
        raise ValueError(f"option gpus_per_trial: {cfg.gpus_per_trial:g}, but " + (
            f"{where} has no GPU; set gpus_per_trial to 0 to train on CPUs" if not most_gpus else
            f"no node of {where} has more than {most_gpus:g} GPU(s); lower gpus_per_trial"))
    if not any(node.get("CPU", 0) >= cfg.cpus_per_trial and node.get("GPU", 0) >= cfg.gpus_per_trial for node in nodes):
        most_cpus = max(node.get("CPU", 0) for node in nodes if node.get("GPU", 0) >= cfg.gpus_per_trial)
        raise ValueError(f"option cpus_per_trial: {cfg.cpus_per_trial:g}, but no node of {where} "
                         f"{'with a GPU ' if cfg.gpus_per_trial else ''}has more than {most_cpus:g} CPUs; "
                         "lower cpus_per_trial")


def cluster_nodes() -> list[dict] | None:
    """The resources of each live Ray node and, on an autoscaling cluster, of each node type it may add."""
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    # `ray up` leaves this file on the head (Ray Tune's own test for an autoscaling cluster)
    bootstrap = Path("~/ray_bootstrap_config.yaml").expanduser()
    if bootstrap.is_file():
        node_types = (yaml.safe_load(bootstrap.read_text()) or {}).get("available_node_types", {}).values()
        if any("resources" not in node_type for node_type in node_types):
            return None
        nodes += [node_type["resources"] for node_type in node_types]
    return nodes
