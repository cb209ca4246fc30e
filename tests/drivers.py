"""The search driver (search/run.py) as a separate process, to kill it mid-search as a user or a crash would."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = [sys.executable, str(ROOT / "search" / "run.py")]


def kill_after_finished_trials(args: list[str], cwd, env: dict | None = None, trials: int = 2, epochs: int = 2,
                               timeout: float = 240) -> str:
    """Start search/run.py ARGS, SIGKILL it once `trials` trials reported epoch `epochs`; returns its output."""
    env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    driver = subprocess.Popen([*RUN, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              cwd=cwd)
    seen, deadline = [], time.time() + timeout
    for line in driver.stdout:
        seen.append(line)
        if sum(f" epoch {epochs}/{epochs}]" in s for s in seen) >= trials or time.time() > deadline:
            break
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    return "".join(seen)


def run_driver(args: list[str], cwd, env: dict | None = None, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([*RUN, *args], env={**os.environ, **(env or {})}, capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)
