"""Data-parallel training of one job over N workers on Ray Train (TorchTrainer, DDP): NCCL on
GPUs, gloo on CPUs.

Each worker runs the job's TorchLoop on its share of every global batch (``recipe.batch_size``
is the global batch, split evenly: the recipe's linear learning-rate rule sees the same batch as
one worker would); DDP averages the gradients, so N workers x batch b take the step one worker
takes on batch N x b, for a loss that is a mean over the batch and layers without batch
statistics (tests/runner/test_data_parallel.py). The logged losses are averaged over the workers,
so every worker has the same curve and makes the same early-check and NaN decisions.

Rank 0 owns the job's checkpoint directory (checkpoints, curve, progress, done marker); every
other rank works in ``ranks/<rank>/`` inside it and starts a retried group from rank 0's latest
checkpoint, so a group restarted after a lost worker resumes where rank 0 left off.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from torch.nn.parallel import DistributedDataParallel

from replicate.jobs import JobResult
from replicate.resolved import ResolvedJob
from replicate.runner import checkpoint as ckpt

RESULT = "result.json"   # rank 0's JobResult, in the job's directory


class ForwardingDDP(DistributedDataParallel):
    """DDP that hands attribute reads it does not have to the wrapped model: a Task's training
    step may read its model's attributes (YOLO's ``heads``) as well as call it."""

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def rank_directory(job_dir: Path, rank: int) -> Path:
    """Where rank ``rank`` of a job keeps its files: the job's own directory for rank 0."""
    return job_dir if rank == 0 else job_dir / "ranks" / str(rank)


def seed_from_rank_zero(job_dir: Path, rank: int) -> None:
    """Give a rank > 0 rank 0's latest checkpoint, so a resumed group starts from one state."""
    if rank == 0:
        return
    latest = job_dir / ckpt.LATEST
    mine = rank_directory(job_dir, rank)
    mine.mkdir(parents=True, exist_ok=True)
    if latest.is_file():
        shutil.copyfile(latest, mine / ckpt.LATEST)
    else:
        (mine / ckpt.LATEST).unlink(missing_ok=True)


def run_data_parallel(job: ResolvedJob, workers: int, *, use_gpu: bool = False, max_failures: int = 2) -> JobResult:
    """Train and evaluate ``job`` on ``workers`` Ray Train workers; rank 0's result.

    Args:
        job: the resolved job (its recipe's batch size is the global batch).
        workers: data-parallel workers (processes; one GPU each with ``use_gpu``).
        use_gpu: NCCL on one GPU per worker, else gloo on CPUs.
        max_failures: group restarts after a lost worker (each resumes from rank 0's checkpoint).
    """
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from replicate.runner.worker import checkpoint_dir

    job_dir = checkpoint_dir(job.cfg, job.job_id)
    (job_dir / RESULT).unlink(missing_ok=True)
    storage = job_dir.resolve() / "ray_train"
    trainer = TorchTrainer(
        _worker_loop, train_loop_config={"wire": job.to_wire()},   # the job's threads travel with it
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": float(job.threads)}),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(name="group", storage_path=str(storage), failure_config=FailureConfig(max_failures)))
    trainer.fit()
    # Rank 0's result, through the job's directory (shared storage on a cluster): Ray Train's own
    # Result keeps only what is reported with a checkpoint.
    return JobResult.from_dict(json.loads((job_dir / RESULT).read_text()))


def _worker_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: the job's loop at this worker's rank; rank 0 writes the result."""
    import ray.train

    from replicate.runner.worker import checkpoint_dir, run_job

    context = ray.train.get_context()
    job = ResolvedJob.from_wire(config["wire"])
    rank = context.get_world_rank()
    result = run_job(job, progress=False, rank=rank, world_size=context.get_world_size())
    # every rank's result beside its files (rank 0's is the job's): the ranks can be compared
    ckpt.write_json(rank_directory(checkpoint_dir(job.cfg, job.job_id), rank) / RESULT, result.to_dict())
