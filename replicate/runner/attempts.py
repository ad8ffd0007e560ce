"""Every attempt of a job, kept in its directory: when it started and ended, on which node, the
steps it reached, the step it resumed from, and what ended it.

A retried job is one result in the store, but a lab pays for every attempt: the one a node took
down with it as much as the one that finished. Each attempt appends itself when it starts; the
next attempt closes a predecessor that never closed itself, ending it at that attempt's last
heartbeat (``progress.json``: the last moment it was seen working) and naming the cause it can
establish (the node gone from the Ray cluster, or the process lost on a live node). The driver
closes the last one when Ray gives up retrying.

What an attempt held beyond the training that counts (its setup, its evaluations, the training
it redid) is billed with the job (:func:`retry_overhead_s`, ``Times.retry_overhead_s``).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any, Callable, Optional

from replicate.runner import checkpoint as ckpt

ATTEMPTS = "attempts.json"
FINISHED = "finished"   # the cause of an attempt that ran to its end
STOPPED = "stopped by signal"   # closed by itself on SIGTERM/Ctrl-C: not lost, nothing to bill as dead


def read(job_dir: Path) -> list[dict[str, Any]]:
    """The job's attempts, oldest first (none when the file is missing or unreadable)."""
    data = ckpt.read_json(job_dir / ATTEMPTS)
    return list(data.get("attempts", [])) if isinstance(data, dict) else []


def _write(job_dir: Path, attempts: list[dict[str, Any]]) -> None:
    ckpt.write_json(job_dir / ATTEMPTS, {"attempts": attempts})


def this_node() -> dict[str, Optional[str]]:
    """The host, and the Ray node when this process is a Ray worker (None outside Ray)."""
    node_id = None
    try:
        import ray

        if ray.is_initialized():
            node_id = ray.get_runtime_context().get_node_id()
    except Exception:   # noqa: BLE001 - no Ray, or no runtime context: the host alone names the node
        node_id = None
    return {"host": socket.gethostname(), "node_id": node_id}


def death_cause(attempt: dict[str, Any]) -> str:
    """What most likely ended an attempt that never closed itself, as far as the cluster can tell."""
    node_id = attempt.get("node_id")
    if node_id:
        try:
            import ray

            if ray.is_initialized():
                node = next((n for n in ray.nodes() if n.get("NodeID") == node_id), None)
                if node is not None and not node.get("Alive"):
                    said = node.get("DeathReasonMessage") or "no longer alive"
                    return f"node lost: Ray node {node_id[:12]} on {attempt.get('host')}: {said}"[:300]
                if node is not None:
                    return (f"process lost on a live node (Ray node {node_id[:12]}): killed, out of memory "
                            "or crashed")
        except Exception:   # noqa: BLE001 - the cluster cannot be asked: say what is known
            pass
    return f"ended without closing its record on {attempt.get('host')} (process or machine lost)"


def _own_heartbeat(attempt: dict[str, Any], job_dir: Path) -> Optional[dict[str, Any]]:
    """The job's last heartbeat if ``attempt`` wrote it (after it began), else None."""
    heartbeat = ckpt.read_json(job_dir / ckpt.PROGRESS) or {}
    return heartbeat if float(heartbeat.get("time", 0.0) or 0.0) >= float(attempt["started"]) else None


def _with_open_attempt(job_dir: Path, change: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
    """Apply ``change`` to the newest attempt if it is still open, and keep the record."""
    attempts = read(job_dir)
    if attempts and attempts[-1].get("ended") is None:
        change(attempts[-1])
        _write(job_dir, attempts)
    return attempts


def _close_dead(attempt: dict[str, Any], job_dir: Path, cause: str) -> None:
    """Close an attempt that did not close itself: at its last heartbeat, or where it began."""
    own = _own_heartbeat(attempt, job_dir)
    attempt["ended"] = float(own["time"]) if own else float(attempt["started"])
    attempt["steps_done"] = int(own.get("step", 0)) if own else int(attempt.get("resumed_from_step") or 0)
    attempt["trained_to_s"] = (float(own.get("train_s", 0.0)) if own
                               else float(attempt.get("resumed_train_s") or 0.0))
    attempt["cause"], attempt["dead"] = cause, True


def begin(job_dir: Path) -> list[dict[str, Any]]:
    """Record this attempt's start; first close a predecessor that died without a word."""
    attempts = read(job_dir)
    for attempt in attempts:
        if attempt.get("ended") is None:
            _close_dead(attempt, job_dir, death_cause(attempt))
    attempts.append({"attempt": len(attempts) + 1, "started": time.time(), "pid": os.getpid(), **this_node(),
                     "resumed_from_step": 0, "resumed_train_s": 0.0, "ended": None, "steps_done": None,
                     "cause": None, "dead": False})
    _write(job_dir, attempts)
    return attempts


def note_resumed(job_dir: Path, step: int, train_s: float) -> None:
    """The step (and training seconds) this attempt starts from: 0 for a fresh start."""
    _with_open_attempt(job_dir, lambda last: last.update(resumed_from_step=int(step), resumed_train_s=float(train_s)))


def finish(job_dir: Path, steps_done: int, train_s: float, cause: str = FINISHED) -> list[dict[str, Any]]:
    """Close this (the newest) attempt: it ended now, for ``cause``, at ``steps_done`` (or its last
    heartbeat's step, when a failure stopped it before the loop counted its steps)."""
    def close(last: dict[str, Any]) -> None:
        own = _own_heartbeat(last, job_dir) or {}
        steps = max(int(steps_done), int(own.get("step", 0)), int(last.get("resumed_from_step") or 0))
        trained = max(float(train_s), float(own.get("train_s", 0.0)))
        last.update(ended=time.time(), steps_done=steps, trained_to_s=trained, cause=cause)

    return _with_open_attempt(job_dir, close)


def close_last(job_dir: Path, cause: str) -> list[dict[str, Any]]:
    """The driver's word on an attempt Ray gave up on: closed at its last heartbeat, for ``cause``."""
    return _with_open_attempt(job_dir, lambda last: _close_dead(last, job_dir, cause))


def retry_overhead_s(attempts: list[dict[str, Any]]) -> float:
    """Seconds the dead attempts held their machine beyond the training they did: their setup and
    evaluations (the training they did is already counted: kept as ``train_s``, redone as
    ``lost_s``). Each dead attempt's time ends at its last heartbeat, so this is a lower bound."""
    total = 0.0
    for attempt in attempts:
        if not attempt.get("dead") or attempt.get("ended") is None:
            continue
        held = float(attempt["ended"]) - float(attempt["started"])
        trained = float(attempt.get("trained_to_s") or 0.0) - float(attempt.get("resumed_train_s") or 0.0)
        total += max(0.0, held - max(0.0, trained))
    return total


def held_s(attempts: list[dict[str, Any]]) -> float:
    """Seconds the dead attempts held their machine in all (for a job no attempt finished: none of
    its training counts as kept or redone, so all of it is billed here)."""
    return sum(float(a["ended"]) - float(a["started"]) for a in attempts if a.get("dead") and a.get("ended"))
