"""Schedulers: Ray (local on the fly, or a cluster address) and inline (this process)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Mapping, Optional, Protocol, runtime_checkable

from replicate.jobs import JobResult
from replicate.resolved import ResolvedJob

if TYPE_CHECKING:
    from replicate.scheduling.deadlines import Deadline

OnResult = Callable[[ResolvedJob, JobResult], None]


@runtime_checkable
class Scheduler(Protocol):
    """What the harness asks of a scheduler: run every resolved job and call ``on_result`` once
    per job as it finishes, in any order; a job's failure is a result, never an exception. A
    running job past its deadline (by job id; scheduling/deadlines.py) is stopped where the
    scheduler can stop it."""

    def run(self, jobs: list[ResolvedJob], on_result: OnResult,
            deadlines: Optional[Mapping[str, Deadline]] = None) -> None: ...
