"""The driver's Ray start: an unreachable cluster leaves nothing behind; a local Ray listens on 127.0.0.1 only."""

import socket
import subprocess
import sys
import time

import pytest
import ray

from search.run import main as search_main

FREE_PORT_TIMEOUT_S = 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("address, says", [
    ("not a host", "Invalid address format"),
    (f"127.0.0.1:{free_port()}", f"within {FREE_PORT_TIMEOUT_S} s"),  # nothing listens: Ray alone retries for minutes
])
def test_an_unreachable_ray_address_is_refused_in_bounded_time_and_writes_nothing(address, says, tmp_path, monkeypatch,
                                                                                  capsys):
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as from the command line: no Ray in this process yet
    monkeypatch.setenv("SEGTUNE_RAY_CONNECT_TIMEOUT_S", str(FREE_PORT_TIMEOUT_S))
    monkeypatch.chdir(tmp_path)
    args = ["--smoke-test", "--name", "x", "--storage-path", str(tmp_path / "results"),
            "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--ray-address", address]
    for _ in range(2):  # the same command, run again, meets no half-made experiment
        started = time.monotonic()
        assert search_main(args) == 2
        assert time.monotonic() - started < FREE_PORT_TIMEOUT_S + 20
        error = capsys.readouterr().err
        assert says in error and "--ray-address / ray_address" in error and "Nothing was written" in error
        assert sorted(p.name for p in tmp_path.iterdir()) == []  # no experiment folder, no mlflow.db, no run


LISTENING = """
import ray
import psutil  # Ray ships it (ray/thirdparty_files, on sys.path once ray is imported)
from search.config import load_config
from search.driver import _start_ray
_start_ray(load_config(None))
me = psutil.Process()
print(sorted({n["NodeManagerAddress"] for n in ray.nodes()}))
print(sorted({c.laddr.ip for p in [me, *me.children(recursive=True)] for c in p.net_connections("inet")
              if c.status == psutil.CONN_LISTEN}))
"""


def test_a_local_search_listens_on_127_0_0_1_only():
    done = subprocess.run([sys.executable, "-c", LISTENING], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    nodes, listening = done.stdout.strip().splitlines()[-2:]
    assert nodes == "['127.0.0.1']"
    assert listening and all(ip in ("127.0.0.1", "::ffff:127.0.0.1") for ip in eval(listening)), listening
