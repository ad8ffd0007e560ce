"""A real multi-node Ray cluster on this machine: a head and worker nodes, each its own
``ray start`` (as on a lab's machines), with token authentication on. A small suite runs through
``scheduler.address``; the CPU worker node is killed mid-job (SIGKILL to its raylet and its
workers) and a replacement joins; one result per job must come back, the lost work and the dead
attempt recorded. A GPU-less node that advertises a GPU (a driver missing in the image) must give
INFRA, never a CPU run billed as a GPU one.

Nodes: the head (no CPUs: it schedules nothing), ``cpu`` (2 CPUs; the CPU jobs ask for 2
threads, so only it can run them) and ``fake-gpu`` (1 CPU, 1 GPU, accelerator_type:H100, no
GPU for torch to see).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from replicate.store.results_store import ResultStore

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
STEPS = 60
EVERY = 10   # checkpoint interval: the node dies between two checkpoints, so there is work to lose


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``, from /proc (children before the walk moves on)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [pid]
    while queue:
        children = parents.get(queue.pop(), [])
        found += children
        queue += children
    return found


class Cluster:
    """Ray nodes as ``ray start --block`` processes (so one node can be killed with everything it
    started, and the test session's other Ray is never touched)."""

    def __init__(self, tmp: Path):
        # Ray's session sockets must stay under AF_UNIX's 107 bytes: a short folder of its own
        self.tmp, self.port, self.ray_dir = tmp, _free_port(), Path(tempfile.mkdtemp(prefix="zr-"))
        self.address = f"127.0.0.1:{self.port}"
        # token auth as a lab's cluster has it (README); fast node-death detection for the test
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
                    "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT), "RAY_health_check_period_ms": "500",
                    "RAY_health_check_failure_threshold": "4", "RAY_health_check_timeout_ms": "1000"}
        self.nodes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *args: str, own_disk_at: Path | None = None) -> None:
        """Start node ``name``; ``own_disk_at``: this node sees an empty disk of its own at that
        path (a mount namespace with a tmpfs there), as a machine without the shared volume would."""
        log = open(self.tmp / f"{name}.log", "w")
        head = ["--head", f"--port={self.port}", f"--temp-dir={self.ray_dir}", "--include-dashboard=false"]
        command = [RAY, "start", "--block", "--disable-usage-stats",
                   *(head if name == "head" else [f"--address={self.address}"]), *args]
        if own_disk_at is not None:
            command = ["unshare", "--mount", "sh", "-c", 'mount -t tmpfs none "$0" && exec "$@"', str(own_disk_at),
                       *command]
        self.nodes[name] = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def kill(self, name: str) -> None:
        """SIGKILL the node's every process at once (its raylet, agents and the workers running
        jobs, which Ray may start in sessions of their own), as when a machine goes down."""
        process = self.nodes.pop(name)
        for pid in [process.pid, *_descendants(process.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait(timeout=30)

    def alive(self) -> int:
        """Alive nodes, asked of the cluster by a client of its own (this process may hold another Ray)."""
        probe = ("import ray; ray.init(address='%s', logging_level='ERROR'); "
                 "print(sum(n['Alive'] for n in ray.nodes()))" % self.address)
        out = subprocess.run([sys.executable, "-c", probe], env=self.env, capture_output=True, text=True, timeout=60)
        return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else 0

    def wait_for(self, count: int, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.alive() == count:
                return
            time.sleep(1)
        raise AssertionError(f"the cluster did not reach {count} alive nodes; logs in {self.tmp}")

    def stop(self) -> None:
        for name in reversed(list(self.nodes)):
            self.kill(name)
        shutil.rmtree(self.ray_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    nodes = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        # one at a time: raylets starting together on one host can pick the same free port
        nodes.start("head", "--num-cpus=0")
        nodes.wait_for(1)
        nodes.start("cpu", "--num-cpus=2")
        nodes.wait_for(2)
        nodes.start("fake-gpu", "--num-cpus=1", "--num-gpus=1", '--resources={"accelerator_type:H100": 1}')
        nodes.wait_for(3)
        yield nodes
    finally:
        nodes.stop()


def _job_running_past_a_checkpoint(checkpoints: Path, timeout: float = 240) -> Path:
    """A job directory whose worker has a checkpoint and has trained past it (work to lose)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for job in checkpoints.glob("*"):
            progress = job / "progress.json"
            if (job / "latest.pt").is_file() and progress.is_file():
                try:
                    step = json.loads(progress.read_text())["step"]
                except (ValueError, KeyError):
                    continue
                # past the early check (25%: it checkpoints too), between two regular checkpoints
                if STEPS // 4 + EVERY // 2 < step < STEPS - EVERY and 2 <= step % EVERY <= 6:
                    return job
        time.sleep(0.1)
    raise AssertionError("no job was seen training past a checkpoint")


@pytest.mark.slow   # a minute; the two-node cluster's refusals below stay in the default run
def test_a_killed_node_is_retried_elsewhere_and_a_fake_gpu_node_is_infra(cluster, tmp_path, tiny):
    results = tmp_path / "results"   # absolute, on the disk every node of this machine shares
    recipe = "model.tiers.smoke.recipe"
    entries = ("suite.entries=[{model:yolov4,tier:smoke,hardware:cpu,seeds:[0,1],overrides:['num_threads=2']},"
               "{model:yolov4,tier:smoke,hardware:h100x1,seeds:[0],overrides:['hardware.ray.num_cpus=1']}]")
    command = [sys.executable, "-m", "replicate.cli", "suite", entries, "suite_id=two-nodes",
               f"scheduler.address={cluster.address}", f"results_dir={results}", *tiny, "tier.compare_with=none",
               f"{recipe}.steps={STEPS}", f"{recipe}.checkpoint_every={EVERY}"]
    began = time.monotonic()
    with open(tmp_path / "driver.log", "w") as log:
        driver = subprocess.Popen(command, env=cluster.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            victim = _job_running_past_a_checkpoint(results / "checkpoints")
            killed_at = time.monotonic() - began
            cluster.kill("cpu")
            cluster.start("cpu-2", "--num-cpus=2")
            driver.wait(timeout=600)
        finally:
            driver.kill()
    took = time.monotonic() - began
    with ResultStore(f"sqlite:///{results}/zoo.db") as store:
        rows = store.jobs(suite_id="two-nodes")
    log = (tmp_path / "driver.log").read_text()
    assert len(rows) == 3, log[-3000:]                        # one result per job, none twice
    cpu = [r for r in rows if r["hardware"] == "cpu"]
    assert [r["verdict"] for r in cpu] == ["MEASURED", "MEASURED"], log[-3000:]
    assert all(r["steps_done"] == STEPS for r in cpu)
    (retried,) = [r for r in cpu if r["job_id"] == victim.name]
    assert retried["restarts"] == 1 and retried["lost_s"] > 0, retried["attempts"]
    dead, last = retried["attempts"]
    assert dead["dead"] and "node lost" in dead["cause"], dead
    assert dead["ended"] >= dead["started"] and EVERY <= dead["steps_done"] < STEPS
    assert last["cause"] == "finished" and last["resumed_from_step"] % EVERY == 0
    assert 0 < last["resumed_from_step"] < dead["steps_done"]   # from its checkpoint, the rest redone
    assert last["node_id"] != dead["node_id"]                 # it ran on the replacement node
    assert retried["retry_overhead_s"] >= 0
    assert retried["wall_s"] == pytest.approx(retried["setup_s"] + retried["train_s"] + retried["eval_s"]
                                              + retried["lost_s"] + retried["retry_overhead_s"])
    (gpu,) = [r for r in rows if r["hardware"] == "h100x1"]
    assert gpu["verdict"] == "INFRA" and "asks for 1 GPU(s); torch on this worker sees 0" in gpu["failure_message"]
    # the figures the README quotes
    print(f"\ntwo-node run: {took:.0f} s; node killed at {killed_at:.0f} s (step {dead['steps_done']}); "
          f"resumed from step {last['resumed_from_step']}; lost {retried['lost_s']:.2f} s of training, "
          f"dead attempt held {dead['ended'] - dead['started']:.1f} s, retry overhead "
          f"{retried['retry_overhead_s']:.2f} s; queue {retried['queue_s']:.1f} s")


def _can_unshare() -> bool:
    probe = ["unshare", "--mount", "sh", "-c", "mount -t tmpfs none /mnt"]
    return shutil.which("unshare") is not None and subprocess.run(probe, capture_output=True).returncode == 0


@pytest.mark.slow   # 20 s; the wrong-token refusal stays in the default run
def test_a_node_without_the_shared_results_dir_is_refused_with_one_line(cluster, tmp_path, tiny):
    """A node that sees its own disk at results_dir would retry jobs from scratch and keep their
    results to itself: the suite stops at its start, exit 2, naming results_dir and the node."""
    if not _can_unshare():
        pytest.skip("needs `unshare --mount` (root or user namespaces) to give one node a disk of its own")
    results = tmp_path / "results"
    results.mkdir()
    before = cluster.alive()
    cluster.start("blind", "--num-cpus=1", own_disk_at=results)
    try:
        cluster.wait_for(before + 1)
        began = time.monotonic()
        run = subprocess.run([sys.executable, "-m", "replicate.cli", "suite", "suite=smoke", "suite_id=blind",
                              f"scheduler.address={cluster.address}", f"results_dir={results}", *tiny,
                              "tier.compare_with=none"], env=cluster.env, cwd=ROOT, capture_output=True, text=True,
                             timeout=300)
    finally:
        cluster.kill("blind")
    err = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 2 and len(err) == 1, run.stderr[-2000:]
    assert f"results_dir {results} is not storage every Ray node shares" in err[0] and "does not see it" in err[0]
    assert time.monotonic() - began < 120
    assert not list(results.glob(".shared-check-*"))          # the probe's file is gone


# slow: 40 s with the two-node cluster's start; a refused address stays in the default run
# (tests/scheduling/test_ray_scheduler.py)
@pytest.mark.slow
def test_a_wrong_cluster_token_is_one_line_exit_2_in_seconds(cluster, tmp_path, tiny):
    """Token authentication refuses the driver: not a traceback after Ray's retries."""
    env = {**cluster.env, "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    began = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "replicate.cli", "run", "model=yolov4",
                          f"scheduler.address={cluster.address}", f"results_dir={tmp_path / 'results'}", *tiny,
                          "tier.compare_with=none"],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    err = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 2 and len(err) == 1, run.stderr[-2000:]
    assert err[0].startswith("error: scheduler.address") and "InvalidAuthToken" in err[0], err
    assert time.monotonic() - began < 30
