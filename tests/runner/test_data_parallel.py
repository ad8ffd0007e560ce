"""Data-parallel training (replicate/runner/data_parallel.py): two gloo workers, each on half of
every global batch, take exactly the steps one worker takes on the whole batch (a mean loss,
no batch statistics), and their logged curve is the global one."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from replicate.config.compose import compose_config
from replicate.jobs import JobResult
from replicate.runner.base_loop import RunContext
from replicate.runner.torch_loop import TorchLoop
from replicate.zoo.task import Task, TaskContext

STEPS, GLOBAL_BATCH = 6, 8
RECIPE = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0, "batch_size": GLOBAL_BATCH,
          "steps": STEPS, "warmup_steps": 0, "milestones": "[]", "checkpoint_every": 1000, "log_every": 1}


class Regression(Task):
    """y = x.w + noise, a linear model, mean squared error: the loss is a mean over the batch."""

    def __init__(self, ctx: Any):
        super().__init__(ctx)
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 4, generator=generator)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(64, generator=generator)

    def prepare_data(self) -> str:
        return "in memory"

    def build_model(self, variant: str) -> Any:
        torch.manual_seed(1)
        return torch.nn.Linear(4, 1)

    def build_dataset(self, split: str, *, train: bool) -> Any:
        return [(self.x[i], self.y[i]) for i in range(len(self.x))]

    def collate(self, items: list) -> Any:
        return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])

    def batch_size_of(self, batch: Any) -> int:
        return len(batch[0])

    def training_step(self, model: Any, batch: Any) -> dict[str, Any]:
        x, y = batch
        return {"loss": torch.nn.functional.mse_loss(model(x).squeeze(1), y)}

    def predict(self, model: Any, batch: Any) -> list[dict]:
        return []

    def build_evaluator(self, split: str) -> Any:
        return None


def _loop(directory: Path, rank: int = 0, world: int = 1) -> TorchLoop:
    cfg = compose_config(["model=yolov4", "tier.compare_with=none", f"results_dir={directory}",
                          *(f"model.tiers.smoke.recipe.{k}={v}" for k, v in RECIPE.items())])
    tier = cfg.model.tiers.smoke
    task = Regression(TaskContext(cfg.model, "tiny", "torch", tier, cfg.datasets[tier.data], 8, 0))
    ctx = RunContext(checkpoint_dir=directory / f"rank{rank}", progress=False, rank=rank, world_size=world)
    return TorchLoop(task, cfg, ctx, JobResult("dp"))


def _train(loop: TorchLoop) -> TorchLoop:
    loop.setup()
    loop.build_training()
    loop.train()
    return loop


def _worker(rank: int, directory: str, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        loop = _train(_loop(Path(directory), rank, 2))
        torch.save({"weights": [p.detach() for p in loop.model.parameters()], "curve": loop.result.curve,
                    "images": loop.result.images_seen}, Path(directory) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_workers_on_half_batches_take_the_step_one_worker_takes_on_the_whole(tmp_path):
    one = _train(_loop(tmp_path / "one"))
    mp.spawn(_worker, args=(str(tmp_path), _free_port()), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    for rank in ranks:
        for mine, single in zip(rank["weights"], one.model.parameters()):
            torch.testing.assert_close(mine, single.detach(), rtol=1e-5, atol=1e-6)
        # the curve is the global batch's: each worker logs the mean of both halves' losses
        assert [p["loss"] for p in rank["curve"]] == pytest.approx([p["loss"] for p in one.result.curve], rel=1e-5)
        assert rank["images"] == one.result.images_seen == STEPS * GLOBAL_BATCH
    moved = sum(float((p.detach() - q.detach()).abs().sum()) for p, q in zip(one.model.parameters(),
                                                                      _loop(tmp_path / "fresh").task.build_model(
                                                                          "tiny").parameters()))
    assert moved > 0.1   # the steps did move the weights: equal weights are not equal by standing still


def test_a_batch_that_does_not_split_evenly_is_refused_naming_the_key(tmp_path):
    from replicate.errors import ConfigError

    loop = _loop(tmp_path, rank=0, world=3)
    loop.setup()
    with pytest.raises(ConfigError) as err:
        loop.build_training()
    assert err.value.key == "model.tiers.smoke.recipe.batch_size"


@pytest.mark.slow   # 40 s; two workers' step against one worker's stays in the default run
def test_a_job_runs_on_two_ray_train_workers_and_rank_zero_keeps_its_files(ray_local, results_dir, tiny):
    """The launcher: a registered model's smoke job on 2 gloo workers through Ray Train's
    TorchTrainer; rank 0 owns the job's directory, rank 1 works in ranks/1/."""
    from replicate.resolved import resolve_job
    from replicate.runner.data_parallel import run_data_parallel
    from replicate.runner.worker import checkpoint_dir

    cfg = compose_config(["model=yolov4", f"results_dir={results_dir}", *tiny, "tier.compare_with=none",
                          "model.tiers.smoke.recipe.batch_size=4"])
    job = resolve_job(cfg, None)
    result = run_data_parallel(job, 2)
    assert result.failure is None, result.failure
    assert result.steps_done == result.steps_planned == 4 and result.images_seen == 4 * 4
    assert "bbox_AP" in result.metrics and [p["step"] for p in result.curve if "loss" in p] == [1, 2, 3, 4]
    job_dir = checkpoint_dir(cfg, job.job_id)
    assert (job_dir / "done.json").is_file() and (job_dir / "ranks" / "1" / "done.json").is_file()
    # both ranks evaluated the same model (rank 0's batch norm statistics): same metrics, so the
    # early check decides the same on every worker
    other = json.loads((job_dir / "ranks" / "1" / "result.json").read_text())
    assert other["metrics"] == result.metrics and other["early_check"]["metric"] == result.early_check["metric"]
    assert [p["loss"] for p in other["curve"] if "loss" in p] == [p["loss"] for p in result.curve if "loss" in p]


@pytest.mark.slow   # 30 s; the two-worker run above stays in the default run
def test_a_suite_job_with_workers_runs_data_parallel_beside_the_others(ray_local, results_dir, tiny):
    """workers=2: the Ray scheduler starts the job's worker group from the driver; the store gets
    one row for it, as for any job."""
    from replicate.harness import run_one
    from replicate.runner.worker import checkpoint_dir

    result = run_one(["model=yolov4", "workers=2", "model.tiers.smoke.recipe.batch_size=4",
                      f"results_dir={results_dir}", *tiny, "tier.compare_with=none"], echo=lambda _: None)
    (row,) = result.jobs
    assert row["verdict"] == "MEASURED" and row["steps_done"] == 4 and row["config"]["workers"] == 2
    cfg = compose_config(["model=yolov4", f"results_dir={results_dir}"])
    assert (checkpoint_dir(cfg, row["job_id"]) / "ranks" / "1" / "done.json").is_file()


def test_workers_follow_the_gpus_of_the_profile_unless_given():
    from replicate.resolved import resolve_job

    def workers(*overrides: str) -> int:
        return resolve_job(compose_config(["model=faster_rcnn", "tier.compare_with=none", *overrides]), None).workers

    assert workers() == 1 and workers("workers=3") == 3
    assert workers("hardware=a100x8", "device=auto") == 8 and workers("hardware=h100x1") == 1
    assert workers("tier=eval", "hardware=a100x8") == 1          # nothing trains


@pytest.mark.slow   # a minute of a killed Ray Train group; single-process resume is in the default run
def test_a_killed_worker_restarts_the_group_and_it_resumes_from_rank_zero(ray_local, results_dir, tiny):
    """SIGKILL rank 1 after rank 0's first checkpoint: Ray Train restarts the group, rank 0
    resumes from its checkpoint (a restart is counted) and rank 1 from a copy of it."""
    import signal
    import threading
    import time

    from replicate.resolved import resolve_job
    from replicate.runner.data_parallel import run_data_parallel
    from replicate.runner.worker import checkpoint_dir

    cfg = compose_config(["model=yolov4", f"results_dir={results_dir}", *tiny, "tier.compare_with=none",
                          "model.tiers.smoke.recipe.batch_size=4", "model.tiers.smoke.recipe.steps=40",
                          "model.tiers.smoke.recipe.checkpoint_every=5"])
    job = resolve_job(cfg, None)
    job_dir = checkpoint_dir(cfg, job.job_id)
    killed: dict[str, int] = {}

    def kill_rank_one() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            record = job_dir / "ranks" / "1" / "worker.json"
            if (job_dir / "latest.pt").is_file() and record.is_file():
                killed["pid"] = json.loads(record.read_text())["pid"]
                os.kill(killed["pid"], signal.SIGKILL)
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_rank_one, daemon=True)
    watcher.start()
    result = run_data_parallel(job, 2)
    watcher.join(timeout=1)
    assert killed, "rank 1 was never seen running"
    assert result.failure is None and result.steps_done == 40
    assert result.restarts >= 1   # rank 0 resumed from its checkpoint instead of starting over
