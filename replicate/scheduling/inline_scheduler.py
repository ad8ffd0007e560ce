"""Inline scheduler: runs jobs one after another in this process (no Ray, no retries).

For debugging a model and for measuring the harness's own overhead; suites use Ray.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from replicate.errors import ResourceUnavailable
from replicate.resolved import ResolvedJob
from replicate.scheduling import OnResult
from replicate.scheduling.deadlines import Deadline


class InlineScheduler:
    """Jobs in this process, in order. The scheduler config's other keys (retries, timeouts) are
    accepted and do not apply, deadlines neither: a job here runs to its end or stops the process."""

    def __init__(self, **_: Any):
        pass

    def run(self, jobs: list[ResolvedJob], on_result: OnResult,
            deadlines: Optional[Mapping[str, Deadline]] = None) -> None:
        import torch

        from replicate.runner.worker import run_resolved

        for job in jobs:
            hw = job.hardware
            if hw.accelerator == "tpu" or hw.ray.num_gpus > torch.cuda.device_count():
                raise ResourceUnavailable(f"hardware={hw.name}: this machine has {torch.cuda.device_count()} GPUs and "
                                          f"no TPU; the profile needs {hw.count} x {hw.accelerator}")
        for job in jobs:
            # The same thread count as a Ray job of this profile: results then match suite runs.
            on_result(job, run_resolved(job, progress=True))
