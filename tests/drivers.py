"""The search driver (search/run.py) as a separate process, to kill it mid-search as a user or a crash would."""

import fnmatch
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = [sys.executable, str(ROOT / "search" / "run.py")]


def kill_once_trials_finished(args: list[str], cwd, names: Callable[[], list[str]],
                              read: Callable[[str], bytes | None], env: dict | None = None,
                              finished: int = 2, timeout: float = 240) -> tuple[str, dict[str, str]]:
    """Start search/run.py ARGS and SIGKILL it once the experiment state Ray Tune saved last holds `finished`
    finished (TERMINATED) trials: what --resume reads, so those trials must not be trained again.

    names() lists the files saved in the experiment folder (relative paths; local or in a bucket) and read(name)
    returns one. Ray saves the experiment state, the searcher's state and each trial's result.json as separate
    files and uploads them one by one, so a kill mid-upload can leave a state whose newest trials the searcher
    state lacks (before the study had a database, the resumed study then never held them: seen once in CI, 4 of 5;
    a search generator state counting fewer trials makes Ray start more than num_samples) or whose finished
    trials' result.json is not there yet (seen once too). The kill waits for a whole snapshot: a search generator
    state counting every trial of the experiment state, and each finished trial's result.json with all its epochs,
    so the tests can ask for num_samples trials and unchanged result files. Returns the driver's output and trial
    id -> status in the state saved before the kill.
    """
    env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    driver = subprocess.Popen([*RUN, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              cwd=cwd)
    seen, deadline, whole = [], time.time() + timeout, None
    threading.Thread(target=lambda: seen.extend(driver.stdout), daemon=True).start()
    while driver.poll() is None and time.time() < deadline and whole is None:
        whole = _whole_snapshot_with(finished, names, read)
        time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    # the snapshot checked whole (a later one may have been caught half uploaded by the kill)
    return "".join(seen), {trial: status for trial, (status, _) in (whole or _trials(names, read)).items()}


def local_files(experiment: Path) -> tuple[Callable[[], list[str]], Callable[[str], bytes | None]]:
    """names() and read(name) over a local experiment folder."""
    def names():
        return [p.relative_to(experiment).as_posix() for p in experiment.rglob("*") if p.is_file()]

    def read(name):
        try:
            return (experiment / name).read_bytes()
        except OSError:
            return None
    return names, read


def _whole_snapshot_with(finished: int, names, read) -> dict[str, tuple[str, int]] | None:
    """The newest saved trials when they are a whole snapshot with `finished` finished trials, else None."""
    trials = _trials(names, read)
    done = {trial: epochs for trial, (status, epochs) in trials.items() if status == "TERMINATED"}
    if len(done) < finished or _trials_generated(names, read) < len(trials):
        return None
    whole = all((read(f"trial_{trial}/result.json") or b"").count(b"\n") == epochs for trial, epochs in done.items())
    return trials if whole else None


def _newest(names, pattern: str) -> str | None:
    found = sorted(name for name in names() if "/" not in name and fnmatch.fnmatch(name, pattern))
    return found[-1] if found else None  # named by the time their session started


def _trials(names, read) -> dict[str, tuple[str, int]]:
    """trial id -> (status, epochs reported) in the newest saved experiment state."""
    newest = _newest(names, "experiment_state-*.json")
    try:
        state = json.loads(read(newest) or b"{}") if newest else {}
    except ValueError:  # caught mid-write: not saved yet
        return {}
    trials = {}
    for data, metadata in state.get("trial_data", []):
        trial, last = json.loads(data), json.loads(metadata).get("last_result") or "{}"
        last = json.loads(last) if isinstance(last, str) else last
        trials[trial["trial_id"]] = (trial["status"], last.get("training_iteration", 0))
    return trials


def _trials_generated(names, read) -> int:
    """Trials Ray's search generator had made in its newest saved state (0 before there is one)."""
    import pickle
    newest = _newest(names, "search_gen_state-*.json")  # a pickle, despite its name
    data = read(newest) if newest else None
    try:
        return pickle.loads(data)["counter"] if data else 0
    except (pickle.UnpicklingError, EOFError):  # caught mid-write: not saved yet
        return 0


def run_driver(args: list[str], cwd, env: dict | None = None, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([*RUN, *args], env={**os.environ, **(env or {})}, capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)
