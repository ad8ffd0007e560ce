"""run_job: what a worker executes for one resolved job. Never raises for a model failure: the
failure is classified and returned in the JobResult, so one broken model never stops a suite."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from replicate.config.selection import job_data, model_tier
from replicate.errors import ResourceUnavailable, StorageError
from replicate.jobs import Failure, JobResult, JobSpec
from replicate.paths import path_component
from replicate.resolved import ResolvedJob
from replicate.runner import attempts
from replicate.runner import checkpoint as ckpt

if TYPE_CHECKING:   # the loops import torch or TensorFlow: only a job's own framework is imported
    from replicate.runner.base_loop import BaseLoop


def checkpoint_dir(cfg: Any, job_id: str) -> Path:
    return Path(cfg.results_dir) / "checkpoints" / path_component(job_id, "job id")


def pick_device(requested: str, hardware: Any, world_size: int = 1) -> str:
    """The torch device of a job. A profile that asks for GPUs gets them or the job is INFRA: a
    node that advertises a GPU torch cannot see (a driver missing in the image) must not train on
    the CPU without a word, billed at the GPU rate and judged as a slow model.

    In a data-parallel group (``world_size`` > 1) each worker holds one GPU of the profile's:
    it needs one visible and trains on its own (``cuda:<local rank>``), never all on GPU 0."""
    import torch

    if hardware.accelerator == "gpu":
        wanted = 1 if world_size > 1 else int(hardware.count or 1)
        seen = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if seen < wanted:
            raise ResourceUnavailable(
                f"hardware={hardware.name} asks for {wanted} GPU(s){' per worker' if world_size > 1 else ''}; torch "
                f"on this worker sees {seen} (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}"
                f", torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'})")
        if world_size == 1:
            return "cuda"
        device = _worker_gpu()
        torch.cuda.set_device(device)   # NCCL's collectives and DDP use the current device
        return str(device)
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def _worker_gpu() -> Any:
    """This data-parallel worker's GPU: Ray Train's choice (it knows which of the node's GPUs it
    gave the worker), else the launcher's LOCAL_RANK."""
    import torch

    try:
        import ray.train.torch

        return ray.train.torch.get_device()
    except Exception:   # noqa: BLE001 - not in a Ray Train worker: torchrun's convention
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def run_job(job: ResolvedJob, *, progress: bool = True, stop_at_early: bool = False, rank: int = 0,
            world_size: int = 1) -> JobResult:
    """Build the Task from the registry, train and evaluate it, return the result.

    Args:
        job: the job, resolved by the driver (its config, target and early check are used as
            they are: nothing is resolved again here).
        progress: show a progress bar on stderr.
        stop_at_early: stop at the early check, unevaluated (a calibration replay).
        rank, world_size: this worker's place in a data-parallel group (run_data_parallel);
            rank 0 owns the job's directory, the others work in ranks/<rank>/ inside it.
    """
    from replicate.runner.base_loop import RunContext
    from replicate.runner.data_parallel import rank_directory, seed_from_rank_zero

    began = time.perf_counter()
    spec = job.spec
    result = JobResult(job_id=spec.job_id)
    seed_from_rank_zero(checkpoint_dir(job.cfg, spec.job_id), rank)
    directory = rank_directory(checkpoint_dir(job.cfg, spec.job_id), rank)
    ctx = RunContext(checkpoint_dir=directory, progress=progress, stop_at_early=stop_at_early,
                     metric=job.target.metric, early=job.early, rank=rank, world_size=world_size,
                     threads=job.threads)
    try:
        with ckpt.JobLock(directory) as lock:
            if lock.holder is None:
                return _run_locked(job, ctx, result, began)
    except StorageError as exc:  # the checkpoint volume cannot be written: the machine's fault
        result.failure = Failure("infrastructure", "crash", str(exc))
    else:  # another process trains this job: never two writers on one directory
        result.failure = Failure("infrastructure", "crash", f"job {spec.job_id} is already running in process "
                                 f"{lock.holder} (lock {directory / ckpt.LOCK}); not started twice")
    result.infra = True
    return result


def set_determinism(deterministic: bool) -> None:
    """torch's deterministic-algorithms flag, set either way: Ray reuses worker processes, and the
    flag is process-wide. warn_only: an op without a deterministic kernel warns instead of failing
    the job. Left alone when it already holds: torch's setter imports torch._inductor (1.8 s of a
    fresh worker's start on 2 cores), which only a compiled model needs."""
    import torch

    if (torch.are_deterministic_algorithms_enabled() != deterministic
            or (deterministic and not torch.is_deterministic_algorithms_warn_only_enabled())):
        torch.use_deterministic_algorithms(deterministic, warn_only=True)


def _run_locked(job: ResolvedJob, ctx: Any, result: JobResult, began: float) -> JobResult:
    from replicate.failures import classify
    from replicate.runner.environment import fingerprint

    spec, cfg = job.spec, job.cfg
    directory = ctx.checkpoint_dir
    try:
        if (directory / ckpt.DONE).exists():  # a finished job run again starts from scratch
            for name in (ckpt.LATEST, ckpt.DONE, ckpt.PROGRESS, attempts.ATTEMPTS):
                (directory / name).unlink(missing_ok=True)
        ckpt.write_json(directory / "worker.json", {"pid": os.getpid(), "started": time.time()})
        attempts.begin(directory)
        from replicate.runner.numeric_threads import apply_job_threads

        result.environment.update(apply_job_threads(ctx.threads))   # the job's count, decided with it
        set_determinism(bool(cfg.tier.get("deterministic")))
        ctx.device = pick_device(cfg.device, cfg.hardware, ctx.world_size)
        result = build_loop(spec, cfg, ctx, result).run()
    except KeyboardInterrupt:   # SIGTERM/Ctrl-C: the job stops unfinished; its record says how
        _close_stopped(directory, ctx, result)
        raise
    except Exception as exc:  # noqa: BLE001 - every model failure becomes a classified result
        result.failure = classify(exc, ctx.stage)
        result.infra = result.infra or result.failure.stage == "infrastructure"  # INFRA, not ERROR
        if result.times.setup_s == 0.0:
            result.times.setup_s = time.perf_counter() - began
    result.environment = {**fingerprint(config_hash=spec.config_hash,
                                        dataset_hash=result.environment.get("dataset_hash"),
                                        device=ctx.device, num_threads=ctx.threads), **result.environment}
    _close_attempt(directory, result)
    if result.failure is None:
        try:
            ckpt.write_json(directory / ckpt.DONE, {"finished": time.time()})
        except Exception as exc:  # noqa: BLE001 - the result stands; only the marker is missing
            result.environment["done_marker"] = str(exc)
    return result


def _close_stopped(directory: Path, ctx: Any, result: JobResult) -> None:
    """Close the attempt a signal stopped: at the step it checkpointed when the loop stopped at a
    step boundary (the resume starts there), else (a signal outside training, or a second one)
    at its last heartbeat, with nothing promised."""
    if ctx.stopped_by:
        cause = f"{attempts.STOPPED}: {ctx.stopped_by} at step {result.steps_done}, checkpointed there"
    else:
        cause = f"{attempts.STOPPED} during {ctx.stage}: resumes from its last checkpoint"
    with contextlib.suppress(StorageError):   # an unwritable volume: the next attempt closes it as lost
        attempts.finish(directory, result.steps_done, result.times.train_s, cause)


def _close_attempt(directory: Path, result: JobResult) -> None:
    """Close this attempt in the job's record of attempts; the result carries them all, and bills
    what the dead ones held beyond their training."""
    failure = result.failure
    cause = attempts.FINISHED if failure is None else f"{failure.stage}: {failure.impact}"
    try:
        history = attempts.finish(directory, result.steps_done, result.times.train_s, cause)
    except StorageError as exc:   # the result stands; only the record of its attempts is missing
        result.environment["attempts_record"] = str(exc)
        return
    result.attempts = history
    result.times.retry_overhead_s = attempts.retry_overhead_s(history)


# The loop of each framework, by module and class: imported when a job needs it, so a torch job
# never imports TensorFlow. A new framework is one row here and its loop module.
LOOPS = {"torch": ("replicate.runner.torch_loop", "TorchLoop"),
         "tensorflow": ("replicate.runner.tf_loop", "TfLoop")}


def loop_class(framework: str) -> type[BaseLoop]:
    """The BaseLoop subclass that runs ``framework``'s steps."""
    import importlib

    module, name = LOOPS[framework]
    return getattr(importlib.import_module(module), name)


def build_loop(spec: JobSpec, cfg: Any, ctx: Any, result: JobResult) -> Any:
    """The job's Task in its framework's loop (its threads in ``ctx``)."""
    loop: Any = loop_class(spec.framework)
    return loop(build_task(spec, cfg), cfg, ctx, result)


def build_task(spec: JobSpec, cfg: Any) -> Any:
    """The registered Task of the job's (model, framework), with the job's defect injected."""
    from replicate.defects import inject
    from replicate.zoo.registry import get_task_class
    from replicate.zoo.task import TaskContext

    cls = get_task_class(spec.model, spec.framework)
    tier = model_tier(cfg)
    ctx = TaskContext(model_cfg=cfg.model, variant=spec.variant, framework=spec.framework, tier_cfg=tier,
                      data_cfg=job_data(cfg), input_size=int(tier.input_size), seed=spec.seed,
                      shuffle_labels=bool(cfg.shuffle_labels))
    # The one place a defect enters a job (``defect=NAME``; a no-op without one): the worker and
    # ``replicate check`` both build their Task here, so a check sees what the job runs.
    return inject(cls(ctx), cfg, spec.framework)


def run_resolved(job: ResolvedJob, *, progress: bool = True) -> JobResult:
    """The job as its config asks: in this process, or on ``job.workers`` data-parallel workers
    (Ray Train). Never raises for a model failure, as run_job."""
    if job.workers == 1:
        return run_job(job, progress=progress)
    from replicate.failures import classify
    from replicate.runner.data_parallel import run_data_parallel

    try:
        return run_data_parallel(job, job.workers, use_gpu=job.hardware.accelerator == "gpu")
    except Exception as exc:  # noqa: BLE001 - the group failed: classified like a single job's failure
        failure = classify(exc, "training")
        return JobResult(job_id=job.job_id, failure=failure, infra=failure.stage == "infrastructure")


def run_job_wire(wire: dict[str, Any], progress: bool = True) -> dict[str, Any]:
    """Plain-JSON wrapper for crossing a process boundary (Ray): ResolvedJob.to_wire in,
    JobResult.to_dict out."""
    return run_job(ResolvedJob.from_wire(wire), progress=progress).to_dict()
