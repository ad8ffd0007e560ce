"""Ray scheduler: start a local Ray on the fly, or connect to a cluster (KubeRay) by address.

Jobs of a suite run concurrently as resources allow. A job whose worker dies is retried by Ray
(``max_retries``) and resumes from its checkpoint; retries exhausted is INFRA. A job that raises
comes back as a classified ERROR result from run_job and does not stop the others.

A running job's deadline (scheduling/deadlines.py: from earlier runs of its recipe, else
``job_timeout_s``) counts from the job's start (its first attempt's ``worker.json``), not its
submission: a job that waited for a node is not cut short for it. The wait is recorded apart
(``queue_s``); a job still queued after ``job_timeout_s`` is INFRA.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Optional

from replicate.errors import ResourceUnavailable
from replicate.jobs import Failure, JobResult
from replicate.resolved import ResolvedJob
from replicate.runner.numeric_threads import PROCESS_WIDE_POOLS
from replicate.scheduling import OnResult
from replicate.scheduling.deadlines import Deadline
from replicate.scheduling.resources import check_fits, task_options


def execute_on_worker(wire: dict[str, Any]) -> dict[str, Any]:
    """The Ray task: one resolved job (ResolvedJob.to_wire, its threads included) in, its
    JobResult as a dict out."""
    from replicate.runner.worker import run_job_wire

    return run_job_wire(wire, progress=False)


CONNECT_TIMEOUT_S = 10.0   # an unreachable head is said in seconds, not after Ray's minutes of retries
# ray.init's attempts (about 1.4 s each) at a head that answers but refuses (a wrong token):
# Ray's default 20 take 30 s; a head that answers TCP (checked first) needs few.
CONNECT_ATTEMPTS = "10"


@contextlib.contextmanager
def _native_stderr_kept() -> Iterator[Callable[[], str]]:
    """While connecting, Ray's C++ client writes a warning line to file descriptor 2 at every
    refused attempt (not through Python's logging): keep them in a file, so a refusal is said in
    one line; what was written is passed on to stderr when the connection succeeds. Also bounds
    ray.init's attempts (``RAY_gcs_server_port_wait_time_s``) unless the caller set it."""
    import tempfile

    sys.stderr.flush()
    saved, kept = os.dup(2), tempfile.TemporaryFile()
    os.dup2(kept.fileno(), 2)
    attempts_set = "RAY_gcs_server_port_wait_time_s" in os.environ
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", CONNECT_ATTEMPTS)

    def said() -> str:
        kept.seek(0)
        return kept.read().decode(errors="replace")

    ok = False
    try:
        yield said
        ok = True
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        if not attempts_set:
            os.environ.pop("RAY_gcs_server_port_wait_time_s", None)
        if ok:
            sys.stderr.write(said())
        kept.close()


def _gcs_refusal(native: str) -> Optional[str]:
    """The reason Ray's C++ client logged for its last refused attempt, if any."""
    reasons = re.findall(r"Failed to get cluster ID from GCS server: (.+)", native)
    return reasons[-1].strip()[:300] if reasons else None


def _check_reachable(address: str) -> None:
    """A ``host:port`` (or ``ray://host:port``) head that does not answer a TCP connect is
    ResourceUnavailable naming scheduler.address, before ray.init retries for minutes."""
    import socket
    from urllib.parse import urlsplit

    if address == "auto":
        return
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise ResourceUnavailable(f"scheduler.address {address!r}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ResourceUnavailable(f"scheduler.address {address}: cannot reach {host}:{port} "
                                  f"({reason}, {CONNECT_TIMEOUT_S:.0f} s timeout)") from None


class _DefaultTokenNotice(logging.Filter):
    """Drops Ray's notice that a cluster it starts has token authentication on by default: said at
    every local start, it came before a bad input's one error line. The notice that a cluster runs
    *without* authentication is security news and stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Token authentication is enabled for this Ray cluster")


logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(_DefaultTokenNotice())


class RayScheduler:
    """Runs resolved jobs as Ray tasks with resources from their hardware profiles."""

    def __init__(self, address: Optional[str] = None, max_retries: int = 2, job_timeout_s: float = 7200,
                 autoscaling: bool = False, num_cpus: Optional[int] = None, **_: Any):
        self.address, self.max_retries, self.job_timeout_s = address, max_retries, job_timeout_s
        self.autoscaling, self.num_cpus = autoscaling, num_cpus

    def start(self) -> bool:
        """Connect to Ray; True when this call started a local Ray that we must shut down."""
        import ray

        if self.address:
            _check_reachable(self.address)
        if ray.is_initialized():
            return False
        kwargs: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=True,
                                      configure_logging=True)
        # ray.init replaces the SIGTERM handler with sys.exit, which leaves Ray's threads to abort the
        # process (exit 134 and a native stack dump); keep the caller's (the CLI's clean stop).
        handler = signal.getsignal(signal.SIGTERM)
        try:
            if self.address:
                with _native_stderr_kept() as said:
                    try:
                        ray.init(address=self.address, **kwargs)
                    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
                        # refused authentication, a version mismatch, not a Ray head: one line, exit 2
                        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
                        why = _gcs_refusal(said())
                        raise ResourceUnavailable(f"scheduler.address {self.address}: Ray did not accept the "
                                                  f"connection: {why or f'{type(exc).__name__}: {first}'}") from None
                return False
            # Workers must import this project: pass the interpreter's path on to them.
            ray.init(num_cpus=self.num_cpus,
                     runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(_project_path())}}, **kwargs)
            return True
        finally:
            if threading.current_thread() is threading.main_thread() and handler is not None:
                signal.signal(signal.SIGTERM, handler)

    def check(self, jobs: list[ResolvedJob]) -> None:
        """Fail fast (exit 2) for a profile no node can ever run, unless the cluster autoscales;
        on a cluster, for a results_dir some node does not share."""
        import ray

        if self.address and jobs:
            check_shared(str(jobs[0].cfg.results_dir))
        if self.autoscaling:
            return
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        for job in jobs:
            check_fits(job.hardware.name, task_options(job.cfg), nodes)

    def run(self, jobs: list[ResolvedJob], on_result: OnResult,
            deadlines: Optional[Mapping[str, Deadline]] = None) -> None:
        import ray

        from replicate.runner.worker import run_resolved

        started = self.start()
        try:
            self.check([j for j in jobs if j.workers == 1])
            # A data-parallel job is a group of Ray Train workers the driver starts (a Ray task
            # cannot hold them); it runs in a driver thread while the others are Ray tasks.
            groups = ThreadPoolExecutor(max_workers=max(1, sum(j.workers > 1 for j in jobs)))
            running = {groups.submit(run_resolved, job, progress=False): job
                       for job in jobs if job.workers > 1}
            shared, own_process = ray.remote(execute_on_worker), ray.remote(max_calls=1)(execute_on_worker)
            pending: dict[Any, Pending] = {}
            for job in [j for j in jobs if j.workers == 1]:
                remote = own_process if job.spec.framework in PROCESS_WIDE_POOLS else shared
                ref = remote.options(**task_options(job.cfg), max_retries=self.max_retries, retry_exceptions=False,
                                     name=job.job_id).remote(job.to_wire())
                deadline = (deadlines or {}).get(job.job_id) or Deadline(self.job_timeout_s, "scheduler.job_timeout_s")
                pending[ref] = Pending(job, submitted=time.time(), deadline=deadline)
            try:
                self.collect(pending, on_result, running)
            except KeyboardInterrupt:   # SIGTERM/Ctrl-C of the driver: the workers stop cleanly first
                stop_running(list(pending))
                raise
            groups.shutdown()
        finally:
            if started:
                ray.shutdown()

    def collect(self, pending: dict[Any, Pending], on_result: OnResult,
                running: Optional[dict[Future, ResolvedJob]] = None) -> None:
        import ray

        running = dict(running or {})
        while pending or running:
            for future in [f for f in running if f.done()]:
                on_result(running.pop(future), future.result())   # run_resolved never raises for a model
            if not pending:
                wait_futures(list(running), timeout=5.0, return_when=FIRST_COMPLETED)
                continue
            done, _ = ray.wait(list(pending), num_returns=1, timeout=5.0)
            for ref in done:
                entry = pending.pop(ref)
                entry.look_for_start()
                result = self.fetch(ref, entry.job)
                result.times.queue_s = entry.queue_s or 0.0
                on_result(entry.job, result)
            now = time.time()
            for ref, entry in list(pending.items()):
                entry.look_for_start()
                # never started: no node served it (the cluster's fault, INFRA); started: a hang
                queued = entry.started is None
                waited = now - (entry.submitted if entry.started is None else entry.started)
                limit = self.job_timeout_s if queued else entry.deadline.seconds
                if waited > limit:
                    ray.cancel(ref, force=True)
                    pending.pop(ref)
                    why = (f"queued, never started, for more than scheduler.job_timeout_s={self.job_timeout_s:g}"
                           if queued else f"running for more than its deadline of {limit:.0f} s: "
                           f"{entry.deadline.basis}")
                    result = with_attempts(entry.job, JobResult(
                        job_id=entry.job.job_id, infra=queued, failure=Failure("infrastructure", "hang", why)))
                    result.times.queue_s = entry.queue_s or waited
                    on_result(entry.job, result)

    def fetch(self, ref: Any, job: ResolvedJob) -> JobResult:
        import ray
        from ray import exceptions as rex

        try:
            return JobResult.from_dict(ray.get(ref))
        except rex.OutOfMemoryError as exc:
            failure = Failure("training", "memory exhaustion", _short(exc))
            return with_attempts(job, JobResult(job_id=job.job_id, failure=failure))
        except (rex.WorkerCrashedError, rex.NodeDiedError, rex.ActorDiedError, rex.RaySystemError,
                rex.ObjectLostError, rex.TaskCancelledError) as exc:
            return with_attempts(job, JobResult(job_id=job.job_id, infra=True, failure=Failure(
                "infrastructure", "crash", f"retries exhausted ({self.max_retries}): {_short(exc)}")))
        except rex.RayTaskError as exc:  # run_job never raises for model failures: a harness defect
            return with_attempts(job, JobResult(job_id=job.job_id, failure=Failure("environment", "crash",
                                                                                   _short(exc))))


# How long a stopped driver waits for its running jobs to checkpoint their step and stop; a job
# whose step takes longer is killed with the cluster and resumes from its previous checkpoint.
# Kubernetes' default grace period after SIGTERM is 30 s.
STOP_GRACE_S = 20.0


def stop_running(refs: list[Any]) -> None:
    """Ask every running job to stop at its next step boundary (Ray's cancel without force raises
    SIGINT's handler in the worker: replicate/runner/stop_request.py) and wait for them a while."""
    import ray

    for ref in refs:
        with contextlib.suppress(Exception):   # finished meanwhile, or already gone
            ray.cancel(ref, force=False)
    if refs:
        with contextlib.suppress(Exception):
            ray.wait(refs, num_returns=len(refs), timeout=STOP_GRACE_S)


def with_attempts(job: ResolvedJob, result: JobResult) -> JobResult:
    """A result the driver makes for a job whose worker never returned one: its attempts, as the
    workers recorded them (results_dir is shared), the last closed with the driver's reason;
    all the time they held is billed (none of their training counts as the job's)."""
    from replicate.runner import attempts
    from replicate.runner.worker import checkpoint_dir

    failure = result.failure
    cause = f"{failure.stage}: {failure.impact}: {failure.message}" if failure else "no result"
    try:
        history = attempts.close_last(checkpoint_dir(job.cfg, job.job_id), cause[:300])
    except Exception:   # noqa: BLE001 - an unwritable volume: the result stands without its attempts
        return result
    result.attempts = history
    result.restarts = max(0, len(history) - 1)
    result.times.retry_overhead_s = attempts.held_s(history)
    return result


SHARED_CHECK_TIMEOUT_S = 120.0   # a node that cannot start a worker in this long is named too


def _sees(path: str, token: str) -> bool:
    """On one node: does ``path`` hold ``token``? (the driver wrote it)."""
    from pathlib import Path

    try:
        return Path(path).read_text() == token
    except OSError:
        return False


def check_shared(results_dir: str) -> None:
    """Every alive node must see the driver's ``results_dir``: workers write checkpoints, attempts
    and results there, and a retried job resumes on another node from what the first wrote. A
    node with its own disk there would train from scratch after every retry and its results would
    never reach the driver. Checked with a file the driver writes and a zero-CPU task pinned to
    each node (nodes that join later are not checked)."""
    import secrets
    from pathlib import Path

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = secrets.token_hex(16)
    marker = Path(results_dir) / f".shared-check-{token[:8]}"
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(token)
    except OSError as exc:
        raise ResourceUnavailable(f"results_dir {results_dir}: cannot write it ({exc.strerror})") from None
    try:
        probe = ray.remote(num_cpus=0, max_retries=0)(_sees)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False),
                              name="results-dir-check").remote(str(marker), token) for n in nodes]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=SHARED_CHECK_TIMEOUT_S)
        blind = []
        for node, ref in zip(nodes, refs):
            seen = ray.get(ref) if ref in ready else None
            if seen is not True:
                why = "does not see it" if seen is False else f"did not answer in {SHARED_CHECK_TIMEOUT_S:g} s"
                host = node.get("NodeManagerHostname") or node.get("NodeManagerAddress")
                blind.append(f"{node['NodeID'][:12]} on {host} {why}")
    finally:
        marker.unlink(missing_ok=True)
    if blind:
        raise ResourceUnavailable(f"results_dir {results_dir} is not storage every Ray node shares: node "
                                  f"{'; node '.join(blind)} (mount one shared volume at this path on every node)")


@dataclass
class Pending:
    """A submitted job: when it was submitted and, once seen, when its first attempt started."""

    job: ResolvedJob
    submitted: float                  # time.time() at submission
    deadline: Deadline                # how long it may run once started
    started: Optional[float] = None   # the first attempt's start (its worker.json), once seen

    def look_for_start(self) -> None:
        """Read the start the worker wrote (results_dir is shared by every node on a cluster); a
        worker.json older than the submission is an earlier run's."""
        if self.started is not None:
            return
        from replicate.runner.worker import checkpoint_dir

        try:
            started = float(json.loads((checkpoint_dir(self.job.cfg, self.job.job_id) / "worker.json")
                                       .read_text())["started"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        if started >= self.submitted:
            self.started = started

    @property
    def queue_s(self) -> Optional[float]:
        return None if self.started is None else self.started - self.submitted


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


def _project_path() -> list[str]:
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    return [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
