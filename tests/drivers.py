"""The search driver (search/run.py) as a separate process, to kill it mid-search as a user or a crash would."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = [sys.executable, str(ROOT / "search" / "run.py")]


def kill_once_trials_finished(args: list[str], cwd, saved_state: Callable[[], str | None],
                              searcher_state: Callable[[], bytes | None], env: dict | None = None,
                              finished: int = 2, timeout: float = 240) -> tuple[str, dict[str, str]]:
    """Start search/run.py ARGS and SIGKILL it once the experiment state Ray Tune saved last holds `finished`
    finished (TERMINATED) trials: what --resume reads, so those trials must not be trained again.

    saved_state() returns the text of the newest experiment_state-*.json, searcher_state() the bytes of the
    newest searcher-state-*.pkl (None before there is one). Ray writes and uploads the two as separate files,
    so a kill between them leaves a searcher state that lacks the newest trials, which the resumed study then
    never holds (a Ray limit, seen once in CI on the s3 test). The kill waits for a searcher state that holds
    every trial of the experiment state, so the tests can ask for the whole study. Returns the driver's output
    and trial id -> status in the state saved before the kill.
    """
    env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    driver = subprocess.Popen([*RUN, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              cwd=cwd)
    seen, deadline = [], time.time() + timeout
    threading.Thread(target=lambda: seen.extend(driver.stdout), daemon=True).start()
    while driver.poll() is None and time.time() < deadline:
        statuses = _statuses(saved_state)
        if list(statuses.values()).count("TERMINATED") >= finished and _study_size(searcher_state) >= len(statuses):
            break
        time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    return "".join(seen), _statuses(saved_state)


def newest_state(experiment: Path) -> str | None:
    """The text of the experiment state Ray Tune saved last in a local experiment folder."""
    states = sorted(experiment.glob("experiment_state-*.json"))  # named by the time they were started
    return states[-1].read_text() if states else None


def newest_searcher_state(experiment: Path) -> bytes | None:
    """The searcher's state Ray Tune saved last in a local experiment folder."""
    states = sorted(experiment.glob("searcher-state-*.pkl"))
    return states[-1].read_bytes() if states else None


def _study_size(searcher_state: Callable[[], bytes | None]) -> int:
    """Trials in the Optuna study of the newest saved searcher state (0 before there is one)."""
    from search.searcher import AshaAwareOptunaSearch
    data = searcher_state()
    if not data:
        return 0
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "state.pkl").write_bytes(data)
        searcher = AshaAwareOptunaSearch(max_epochs=1)
        searcher.restore(str(Path(folder) / "state.pkl"))
    return len(searcher.study.trials)


def _statuses(saved_state: Callable[[], str | None]) -> dict[str, str]:
    try:
        state = json.loads(saved_state() or '{"trial_data": []}')
    except ValueError:  # caught mid-write: not saved yet
        return {}
    return {trial["trial_id"]: trial["status"] for trial in (json.loads(data) for data, _ in state["trial_data"])}


def run_driver(args: list[str], cwd, env: dict | None = None, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([*RUN, *args], env={**os.environ, **(env or {})}, capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)
