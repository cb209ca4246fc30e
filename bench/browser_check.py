"""Check in a real browser what a person sees of a finished search: MLflow's pages and the Optuna dashboard.

    python bench/browser_check.py --out /tmp/browser_check                      # runs a smoke search first
    python bench/browser_check.py --out DIR --experiment segtune_results/NAME --tracking-uri sqlite:///mlflow.db

Starts `mlflow ui` (and `optuna-dashboard` over the search's study database) on 127.0.0.1, opens them in
headless Chromium (Debian's `chromium` package: `apt-get install chromium`), saves a screenshot of each page
under --out and checks the page text for what a person must see:
    runs       the experiment opens on its training runs; the search's parent run is listed and its trials are
               nested under it (not listed beside it)
    parent     the parent run's files: config, splits, leaderboard and the plots
    child      a trial run's per-epoch val_miou chart and its segtune.outcome tag
    study      the dashboard's study page: its history plot and trial count
Writes findings.md (one line a check) and exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

VIEW = "?workflowType=machine_learning"
"""MLflow 3.17 shows GenAI pages until told (segtune.tracking.runs_page); what the search's printed link asks for."""
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=60000"]
"""As the machine's notes advise: without the background-networking flags Chromium keeps dialling out."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(command: list[str], url: str, log: Path, timeout_s: float = 600) -> subprocess.Popen:
    """Start a server and wait until `url` answers."""
    # a session of its own: `mlflow ui` starts job consumers that outlive a plain terminate of the server
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{command[0]} exited early; see {log}")
        try:
            urllib.request.urlopen(url, timeout=5)
            return process
        except OSError:
            time.sleep(1)
    stop(process)
    raise SystemExit(f"{command[0]} did not answer {url} within {timeout_s:.0f} s; see {log}")


def stop(process: subprocess.Popen) -> None:
    """Stop a server and everything it started: SIGTERM to its group, then SIGKILL to what outlived the leader."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
        time.sleep(2)
        os.killpg(process.pid, signal.SIGKILL)


def page_text(url: str, screenshot: Path, profile: Path, height: int = 900) -> str:
    """The page's visible text once its scripts ran, and a screenshot of it."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed: apt-get install chromium")
    pages = []
    for extra in (["--dump-dom"], [f"--screenshot={screenshot}"]):  # the screenshot after: the server has warmed
        shutil.rmtree(profile, ignore_errors=True)
        pages.append(subprocess.run([chromium, *CHROMIUM_FLAGS, f"--window-size=1400,{height}",
                                     f"--user-data-dir={profile}", *extra, url],
                                    capture_output=True, text=True, timeout=180).stdout)
    dom = re.sub(r"<script.*?</script>|<style.*?</style>", " ", pages[0], flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom)))


def api(server: str, path: str, **query) -> dict:
    body = json.dumps(query).encode() if query else None
    request = urllib.request.Request(f"{server}/api/2.0/mlflow/{path}", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def smoke_search(out: Path) -> tuple[Path, str]:
    uri = f"sqlite:///{out}/mlflow.db"
    subprocess.run([sys.executable, str(ROOT / "search" / "run.py"), "--smoke-test", "--name", "browser-smoke",
                    "--storage-path", str(out / "results"), "--tracking-uri", uri], check=True)
    return out / "results" / "browser-smoke", uri


def check_mlflow(server: str, experiment_name: str, search_name: str, out: Path) -> list[tuple[str, bool, str]]:
    experiment = api(server, "experiments/get-by-name?experiment_name=" + experiment_name.replace(" ", "%20"))
    experiment_id = experiment["experiment"]["experiment_id"]
    runs = api(server, "runs/search", experiment_ids=[experiment_id], max_results=1000)["runs"]
    tags = [{t["key"]: t["value"] for t in run["data"].get("tags", [])} for run in runs]
    parent = next(r for r, t in zip(runs, tags) if t.get("mlflow.runName") == search_name
                  and "mlflow.parentRunId" not in t)
    parent_id = parent["info"]["run_id"]
    children = [(r, t) for r, t in zip(runs, tags) if t.get("mlflow.parentRunId") == parent_id
                and "segtune.trial_id" in t]
    child, child_tags = max(children, key=lambda c: c[1].get("segtune.outcome") == "completed")  # a whole curve
    checks = []
    site = f"{server}/#/experiments/{experiment_id}"
    profile = out / "chromium-profile"

    text = page_text(f"{site}/runs{VIEW}", out / "runs.png", profile)
    hidden = [t["mlflow.runName"] for _, t in children if t["mlflow.runName"] in text.split()]
    checks.append(("runs", search_name in text and not hidden and f"{len(runs)} matching runs" in text,
                   f"parent {search_name!r} listed, {len(children)} trials nested under it"
                   + (f"; trials listed beside it: {hidden}" if hidden else "")))
    text = page_text(f"{site}", out / "experiment-without-link.png", profile)
    checks.append(("experiment without the link", None, "a fresh browser opening the experiment without "
                   "?workflowType=machine_learning lands on " + ("MLflow's GenAI overview (traces, usage)"
                                                                 if "Usage" in text else "its runs")))

    text = page_text(f"{site}/runs/{parent_id}/artifacts{VIEW}", out / "parent-artifacts.png", profile)
    wanted = ["leaderboard.csv", "plots", "search_config.yaml", "splits.json"]
    checks.append(("parent", all(w in text for w in wanted),
                   f"files shown: {[w for w in wanted if w in text]} of {wanted}"))

    child_id = child["info"]["run_id"]
    # tall enough for every chart: MLflow draws a chart only once it scrolls into view
    text = page_text(f"{site}/runs/{child_id}/model-metrics{VIEW}", out / "child-metrics.png", profile, height=2400)
    checks.append(("child chart", re.search(r"\(val_miou\)", text) is not None,
                   "per-epoch val_miou chart on the trial's metrics tab (its legend 'TRIAL (val_miou)' drawn)"))
    text = page_text(f"{site}/runs/{child_id}{VIEW}", out / "child-overview.png", profile)
    outcome = child_tags.get("segtune.outcome", "")
    checks.append(("child outcome", bool(outcome) and "segtune.outcome" in text and outcome in text,
                   f"segtune.outcome = {outcome!r} on the trial's overview"))
    return checks


def check_dashboard(study_url: str, out: Path) -> list[tuple[str, bool, str]]:
    dashboard = BIN / "optuna-dashboard"
    if not dashboard.exists():
        return [("study", False, "optuna-dashboard is not installed (pip install -e '.[dev]' installs it)")]
    port = free_port()
    process = serve([str(dashboard), study_url, "--host", "127.0.0.1", "--port", str(port)],
                    f"http://127.0.0.1:{port}/api/studies", out / "dashboard.log")
    try:
        studies = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=30))["study_summaries"]
        study_id = studies[0]["study_id"]
        text = page_text(f"http://127.0.0.1:{port}/dashboard/studies/{study_id}", out / "study.png",
                         out / "chromium-profile")
        trials = page_text(f"http://127.0.0.1:{port}/dashboard/studies/{study_id}/trials", out / "study-trials.png",
                           out / "chromium-profile")
    finally:
        stop(process)
    return [("study", "History" in text, f"study {studies[0]['study_name']!r}: history plot shown"),
            ("study trials", "Trial" in trials, "the trials page lists the trials")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/browser_check"))
    parser.add_argument("--experiment", type=Path, default=None, help="a finished search's folder (default: run a "
                        "smoke search into --out)")
    parser.add_argument("--tracking-uri", default=None, help="its MLflow store (with --experiment)")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    experiment, uri = (args.experiment.resolve(), args.tracking_uri) if args.experiment else smoke_search(out)

    from search import load_config
    from search.study import study_url
    from segtune.paths import ExperimentPaths
    paths = ExperimentPaths(experiment)
    cfg = load_config(str(paths.config))
    port = free_port()
    server = f"http://127.0.0.1:{port}"
    process = serve([str(BIN / "mlflow"), "ui", "--backend-store-uri", uri or cfg.tracking_uri, "--host", "127.0.0.1",
                     "--port", str(port), "--workers", "1"], f"{server}/health", out / "mlflow.log")
    try:
        checks = check_mlflow(server, cfg.mlflow_experiment, cfg.name, out)
    finally:
        stop(process)
    checks += check_dashboard(study_url(cfg.study_storage, paths), out)
    lines = [f"- {'info' if passed is None else 'ok  ' if passed else 'FAIL'} {name}: {detail}"
             for name, passed, detail in checks]
    (out / "findings.md").write_text("\n".join(lines) + f"\n\nscreenshots: {out}/*.png\n")
    print("\n".join(lines))
    return 0 if all(passed is not False for _, passed, _ in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
