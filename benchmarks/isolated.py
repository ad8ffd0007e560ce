"""One measurement in a fresh process of its own, so no run inherits another's heap, caches or
thread pools, and a failure in it is reported rather than lost."""

from __future__ import annotations

import multiprocessing
from typing import Any, Callable, Sequence


def _child(target: Callable[..., float], args: tuple, queue: Any) -> None:
    # A spawned child inherits "spawn" as its default start method, so its own DataLoader workers
    # would each re-import torch (4 of them halved a CPU evaluation's speed); a process started
    # from a shell forks them, as the measured code does in a job.
    multiprocessing.set_start_method("fork", force=True)
    try:
        queue.put(float(target(*args)))
    except BaseException as exc:   # noqa: BLE001 - reported to the parent, which fails the benchmark
        queue.put(f"{type(exc).__name__}: {exc}")


def in_fresh_process(what: str, target: Callable[..., float], *args: Any) -> float:
    """``target(*args)`` (a module-level function returning a float) in a spawned process.

    Spawned, not forked: a process that already ran TensorFlow (a test session) hangs a forked
    child in TF's thread pools. The child's imports are outside whatever ``target`` times.

    Raises:
        RuntimeError: the run failed; the message names ``what`` and the child's error.
    """
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_child, args=(target, args, queue))
    child.start()
    outcome = queue.get()
    child.join()
    if not isinstance(outcome, float):
        raise RuntimeError(f"{what} run failed: {outcome}")
    return outcome


def ratio_of_minima(baseline: Sequence[float], measured: Sequence[float]) -> float:
    """The fastest measured run over the fastest baseline run: interference only ever slows a
    run, so each side's minimum is the closest to what it costs (``timeit``'s rationale)."""
    return min(measured) / min(baseline)
