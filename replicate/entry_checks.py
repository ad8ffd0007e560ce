"""Inputs checked where they enter: before any job is scheduled, so a bad one is exit 2 with one
line naming it, never an ERROR row in the store.

* ``model.tiers.<tier>.input_size`` is a multiple of what the job's Task declares
  (:meth:`~replicate.zoo.task.Task.input_size_multiple`: the network's total downsampling);
  another size would fail mid-run on a tensor size mismatch. A ConfigError naming the key.
* A ``checkpoint=`` file loads into the job's model as the job loads it (the Task's own format,
  else the job's loop's own, read as data only): the model is built on the CPU, nothing runs
  through it. A DataError naming the file and the first key that does not fit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from replicate.config.selection import model_tier
from replicate.errors import ConfigError
from replicate.resolved import ResolvedJob
from replicate.zoo.task import Task


def check_input_size(cfg: Any, framework: str, variant: str) -> None:
    """The job's tier's ``input_size`` against the multiple its model declares for ``variant``."""
    from replicate.zoo.registry import get_task_class

    tier = cfg.tier.name
    size = int(cfg.model.tiers[tier].input_size)
    task_class: type[Task] = get_task_class(cfg.model.name, framework)
    multiple = task_class.input_size_multiple(cfg.model, variant)
    if multiple is not None and size % multiple:
        nearest = [n for n in (size // multiple * multiple, (size // multiple + 1) * multiple) if n > 0]
        raise ConfigError(f"model.tiers.{tier}.input_size",
                          f"{size} is not a multiple of {multiple}, the total stride of {cfg.model.name}'s "
                          f"{variant} variant (nearest: {', '.join(map(str, nearest))})")


def check_input_sizes(jobs: Sequence[ResolvedJob]) -> None:
    for job in jobs:
        check_input_size(job.cfg, job.spec.framework, job.spec.variant)


def check_checkpoints(jobs: Sequence[ResolvedJob]) -> None:
    """Each distinct (model build, ``checkpoint=`` file) once: the file loads into the model, in
    the Task's own format or else the job's loop's (torch state dict, TensorFlow-loop checkpoint).
    A TensorFlow model is built with the job's thread pools (replicate/runner/numeric_threads.py):
    TensorFlow fixes them in this process the first time it runs."""
    from replicate.runner.numeric_threads import apply_job_threads
    from replicate.runner.worker import build_task, loop_class
    from replicate.scheduling.resources import job_threads

    seen: set[tuple[str, str, str, int, str]] = set()
    for job in jobs:
        if not job.cfg.checkpoint:
            continue
        path = Path(str(job.cfg.checkpoint)).expanduser()
        build = (job.spec.model, job.spec.framework, job.spec.variant,
                 int(model_tier(job.cfg).input_size), str(path))
        if build in seen:
            continue
        seen.add(build)
        apply_job_threads(job_threads(job.cfg))
        task = build_task(job.spec, job.cfg)
        model = task.build_model(job.spec.variant)
        if not task.load_checkpoint(model, path):
            loop_class(job.spec.framework).load_state_into(model, path)
