"""Inline scheduler: runs jobs one after another in this process (no Ray, no retries).

For debugging a model and for measuring the harness's own overhead; suites use Ray.
"""

from __future__ import annotations

from typing import Any, Callable

from replicate.errors import ResourceUnavailable
from replicate.jobs import JobResult, JobSpec
from replicate.scheduling.resources import job_threads


class InlineScheduler:
    """Jobs in this process, in order. The scheduler config's other keys (retries, timeouts) are
    accepted and do not apply: a job here runs to its end or stops the process."""

    def __init__(self, **_: Any):
        pass

    def run(self, jobs: list[tuple[JobSpec, Any]], on_result: Callable[[JobSpec, JobResult], None]) -> None:
        import torch

        from replicate.runner.worker import run_job

        for _spec, cfg in jobs:
            hw = cfg.hardware
            if hw.accelerator == "tpu" or hw.ray.num_gpus > torch.cuda.device_count():
                raise ResourceUnavailable(f"hardware={hw.name}: this machine has {torch.cuda.device_count()} GPUs and "
                                          f"no TPU; the profile needs {hw.count} x {hw.accelerator}")
        for spec, cfg in jobs:
            # The same thread count as a Ray job of this profile: results then match suite runs.
            on_result(spec, run_job(spec, progress=True, num_threads=job_threads(cfg)))
