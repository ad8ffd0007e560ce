"""SIGTERM (what Kubernetes sends a pod it stops) ends a suite like Ctrl-C: one clean line,
exit 143, a consistent store, and a re-run of the same suite id resumes the job."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from replicate.store.results_store import ResultStore

ROOT = Path(__file__).resolve().parents[1]
ENTRY = "suite.entries=[{model:yolov4,tier:smoke,hardware:cpu,seeds:[0]}]"


def _suite(results_dir: Path, shapes_root: Path, tiny: list[str], scheduler: str) -> list[str]:
    return [sys.executable, "-m", "replicate.cli", "suite", ENTRY, "suite_id=sigterm", f"scheduler={scheduler}",
            f"results_dir={results_dir}", f"datasets.shapes.root={shapes_root}", *tiny, "tier.compare_with=none",
            "model.tiers.smoke.recipe.steps=200", "model.tiers.smoke.recipe.checkpoint_every=5",
            "model.tiers.smoke.recipe.log_every=5", "tier.early_check.enabled=false"]


def _checkpointed_step(results_dir: Path) -> int:
    import torch

    (latest,) = results_dir.glob("checkpoints/*/latest.pt")
    return int(torch.load(latest, weights_only=False)["step"])


# local: a Ray cluster started by the driver; postgresql: the store on a real server (tests/conftest.py)
# Ctrl-C's and PostgreSQL's cases (30 s each) in the slow run; Ctrl-C's path differs only in the
# exception raised (tests/runner/test_stop_request.py)
@pytest.mark.parametrize("scheduler, database, signum, code", [
    ("inline", "sqlite", signal.SIGTERM, 143), ("local", "sqlite", signal.SIGTERM, 143),
    pytest.param("inline", "sqlite", signal.SIGINT, 130, marks=pytest.mark.slow),
    pytest.param("inline", "postgresql", signal.SIGTERM, 143, marks=pytest.mark.slow)])
def test_a_signal_stops_a_suite_cleanly_at_a_checkpointed_step_and_the_job_resumes_there(
        scheduler, database, signum, code, results_dir, shapes_root, tiny, request):
    url = request.getfixturevalue("pg_url") if database == "postgresql" else f"sqlite:///{results_dir / 'zoo.db'}"
    command = [*_suite(results_dir, shapes_root, tiny, scheduler), f"store.url='{url}'"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list((results_dir / "checkpoints").glob("*/latest.pt")):   # training has started
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.2)
    time.sleep(0.3)   # most often between two periodic checkpoints (every 5 steps)
    process.send_signal(signum)
    sent = time.monotonic()
    out, err = process.communicate(timeout=60)
    assert process.returncode == code, err[-3000:]
    assert time.monotonic() - sent < 30   # inside a pod's default grace period (Ray's shutdown included)
    assert ("terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted") in err.strip().splitlines()[-1]
    assert "Traceback" not in err and "Stack trace" not in err and "SIGABRT" not in err
    with ResultStore(url) as store:
        (suite,) = store.suites()
        assert suite["finished_at"] is None and store.jobs(suite_id="sigterm") == []   # nothing half-written
    # The job stopped at a step boundary, checkpointed that step and said so in its record.
    stopped_at = _checkpointed_step(results_dir)
    (record,) = results_dir.glob("checkpoints/*/attempts.json")
    (attempt,) = json.loads(record.read_text())["attempts"]
    # under Ray the driver stops its workers through Ray's cancel
    name = "its driver (Ray cancelled the task)" if scheduler == "local" else signal.Signals(signum).name
    assert attempt["cause"] == f"stopped by signal: {name} at step {stopped_at}, checkpointed there", attempt
    assert not attempt["dead"] and attempt["steps_done"] == stopped_at
    # the same suite id picks the job up from that very step: nothing is redone
    rerun = subprocess.run([*command, "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 1, rerun.stderr[-3000:]   # MEASURED is not PASS: exit 1 by design
    with ResultStore(url) as store:
        (row,) = store.jobs(suite_id="sigterm")
    assert row["verdict"] == "MEASURED" and row["steps_done"] == 200 and row["restarts"] == 1
    stopped, resumed = row["attempts"]
    assert stopped["cause"] == attempt["cause"] and not stopped["dead"]
    assert resumed["resumed_from_step"] == stopped_at and resumed["cause"] == "finished"
    assert row["lost_s"] < 1.0   # the stopped attempt's training all counts: only the restart's setup is lost


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def test_a_driver_killed_outright_loses_nothing_and_the_rerun_resumes_its_job(database, results_dir, shapes_root,
                                                                              tiny, request):
    """SIGKILL (an evicted pod, the OOM killer): no handler runs. The store keeps no half row, the
    checkpoint is whole (written atomically), and the same suite id resumes the job: one row."""
    url = request.getfixturevalue("pg_url") if database == "postgresql" else f"sqlite:///{results_dir / 'zoo.db'}"
    command = [*_suite(results_dir, shapes_root, tiny, "inline"), f"store.url='{url}'"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list((results_dir / "checkpoints").glob("*/latest.pt")):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.2)
    process.kill()
    process.wait(timeout=30)
    with ResultStore(url) as store:
        assert store.jobs(suite_id="sigterm") == []
    rerun = subprocess.run([*command, "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 1, rerun.stderr[-3000:]   # MEASURED is not PASS: exit 1 by design
    with ResultStore(url) as store:
        (row,) = store.jobs(suite_id="sigterm")
    assert row["verdict"] == "MEASURED" and row["steps_done"] == 200 and row["restarts"] == 1
    lost, _ = row["attempts"]   # said apart from a clean stop: nothing closed it but its successor
    assert lost["dead"] and "stopped by signal" not in lost["cause"]
