"""Schedulers: Ray (local on the fly, or a cluster address) and inline (this process)."""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

from replicate.jobs import JobResult, JobSpec

OnResult = Callable[[JobSpec, JobResult], None]


@runtime_checkable
class Scheduler(Protocol):
    """What the harness asks of a scheduler: run every (spec, config) pair and call ``on_result``
    once per job as it finishes, in any order; a job's failure is a result, never an exception."""

    def run(self, jobs: list[tuple[JobSpec, Any]], on_result: OnResult) -> None: ...
