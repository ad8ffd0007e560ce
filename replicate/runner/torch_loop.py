"""The PyTorch training and evaluation loop every torch Task runs through.

Optimizer and schedule from the recipe, linear LR scaling, the job's precision (fp32, or fp16
autocast with a GradScaler where it asks for amp and runs on CUDA), channels-last on CUDA, and the
DataLoader; the rest (atomic checkpoints every N steps with resume from the latest, a NaN/Inf
guard, a progress bar, the learning curve, the 25% early check against the reference curve) is
replicate/runner/base_loop.py's, shared with the TensorFlow loop.
"""

from __future__ import annotations

import os
import random
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

from replicate.errors import ConfigError
from replicate.jobs import JobResult
from replicate.precision import autocasts, chosen_precision
from replicate.runner import checkpoint as ckpt
from replicate.runner.base_loop import BaseLoop, RunContext
from replicate.runner.batch_order import job_batch_order
from replicate.runner.mixed_precision import MixedPrecision
from replicate.runner.optim import build_optimizer, lr_factor, scaled_lr, total_steps
from replicate.runner.prefetch import prefetched
from replicate.runner.schedule_check import torch_applied
from replicate.zoo.task import Task


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def to_device(obj: Any, device: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


class TorchLoop(BaseLoop):
    """Runs one job of a torch Task: setup -> train (optional) -> evaluate -> JobResult."""

    def __init__(self, task: Task, cfg: Any, ctx: RunContext, result: JobResult):
        # torch's intra-op threads (ctx.threads) were set by the worker before the loop (run_job)
        super().__init__(task, cfg, ctx, result)
        self.device = torch.device(ctx.device)
        self.on_cuda = self.device.type == "cuda"
        # fp16 autocast only where the job asks for amp and runs on CUDA; recorded with the result
        # (its environment), so a report shows the arithmetic the numbers came from
        self.fp16 = autocasts(chosen_precision(cfg), self.device.type)
        self.mixed = MixedPrecision.for_device(self.fp16, self.device.type)
        self.result.environment["precision"] = "amp" if self.fp16 else "fp32"
        # What the training step calls: the model, or its DDP wrapper with several workers.
        self.train_model: Any = None

    @property
    def data_parallel(self) -> bool:
        return self.ctx.world_size > 1

    # ----------------------------------------------------------------- setup
    def setup(self) -> None:
        seed_everything(self.seed)
        self.ctx.stage = "data pipeline"
        self.dataset_hash = self.task.prepare_data()
        self.ctx.stage = "modeling"
        self.model = self.task.build_model(self.task.ctx.variant).to(self.device)
        if self.on_cuda:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.load_job_weights()

    @staticmethod
    def load_state_into(model: Any, path: Path) -> None:
        ckpt.load_state_file(model, path)

    def loader(self, dataset: Any, batch_size: int = 1, batches: Optional[list[list[int]]] = None,
               mid_epoch: bool = False) -> DataLoader:
        """Training: the given ``batches`` of indices (BatchOrder); evaluation: in order, through
        the task's ``eval_collate``.

        Each DataLoader iterator draws a base seed from torch's global generator when it starts,
        which shifts the stream the model's own sampling uses (RPN/ROI sampling, dropout). That
        draw belongs to the start of an epoch: a job resumed mid-epoch restored a generator state
        taken after it, so its iterator draws from a private generator and leaves the global
        stream where the uninterrupted job had it.
        """
        workers = 0 if self.device.type == "cpu" else min(8, os.cpu_count() or 1)
        common: dict[str, Any] = dict(num_workers=workers, pin_memory=self.on_cuda)
        if batches is not None:
            private = torch.Generator().manual_seed(self.seed) if mid_epoch else None
            return DataLoader(dataset, batch_sampler=batches, generator=private, collate_fn=self.task.collate, **common)
        return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=self.task.eval_collate, **common)

    # ----------------------------------------------------------------- train
    def build_training(self) -> None:
        recipe = self.tier.recipe
        self.build_train_set()
        self.steps, per_unit = total_steps(recipe, len(self.train_set), self.cfg.tier.schedule_fraction)
        lr, self.result.lr_scaling = scaled_lr(recipe)
        self.optimizers = self.task.configure_optimizers(self.model, recipe, lr, build_optimizer)
        self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, lambda s: lr_factor(s, self.steps, per_unit, recipe))
                           for k, o in self.optimizers.items()}
        self.result.steps_planned = self.steps
        self.step, self.train_s = 0, 0.0
        self.train_model = self.model
        if self.data_parallel:
            self.train_model = self.wrap_data_parallel(recipe)

    def wrap_data_parallel(self, recipe: Any) -> Any:
        """The model in DDP; refuses what the split cannot keep equal to one worker's step."""
        from replicate.runner.data_parallel import ForwardingDDP

        key = f"model.tiers.{self.cfg.tier.name}.recipe.batch_size"
        if recipe.batch_size % self.ctx.world_size:
            raise ConfigError(key, f"{recipe.batch_size} does not split evenly over {self.ctx.world_size} workers")
        if self.task.manual_optimization:
            raise ConfigError("workers", f"{self.cfg.model.name} steps its own optimizers (a GAN): not data-parallel")
        devices = [self.device.index] if self.device.type == "cuda" and self.device.index is not None else None
        return ForwardingDDP(self.model, device_ids=devices)

    def framework_state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(),
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
                "scaler": self.mixed.scaler.state_dict(), "rng": {"torch": torch.get_rng_state()}}

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(state["schedulers"][k])
        self.mixed.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])

    def batches(self) -> Iterator[Any]:
        order = job_batch_order(self.task, self.train_set, self.tier.recipe, self.seed)
        epoch, offset = order.position(self.step)
        rank, world = self.ctx.rank, self.ctx.world_size
        while True:
            self.start_epoch(epoch)
            # every worker draws the same global batches and takes its share of each
            batches = [batch[rank::world] for batch in order.epoch(epoch)[offset:]]
            yield from self.loader(self.train_set, batches=batches, mid_epoch=offset > 0)
            epoch, offset = epoch + 1, 0

    def train_step(self, batch: Any) -> dict[str, float]:
        batch = to_device(batch, self.device)
        mixed = self.mixed
        if self.task.manual_optimization:  # the task steps its own optimizers (GANs), through ``mixed``
            out = self.task.training_step(self.model, batch, self.optimizers, mixed)
        else:
            optimizer = self.optimizers["main"]
            optimizer.zero_grad(set_to_none=True)
            with mixed.autocast():   # the forward pass only: backward runs outside autocast
                out = self.task.training_step(self.train_model, batch)
            if not self.data_parallel:   # several workers judge the averaged loss below, together
                self.check_finite(out["loss"])
            mixed.backward(out["loss"])
            if self.tier.recipe.grad_clip:
                mixed.unscale(optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tier.recipe.grad_clip)
            mixed.step(optimizer)
        mixed.update()   # once per iteration, after every optimizer's step
        self.applied_lr = torch_applied(self.optimizers)   # the rates this step used, before the schedulers move
        for sched in self.schedulers.values():
            sched.step()
        values = {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in out.items()}
        if self.data_parallel:
            values = averaged_over_workers(values, self.device)
        self.check_finite(values["loss"])
        self.result.images_seen += self.task.batch_size_of(batch) * self.ctx.world_size
        return values

    def current_lr(self) -> float:
        return float(self.schedulers[next(iter(self.schedulers))].get_last_lr()[0])

    def enter_training(self) -> None:
        self.model.train()

    def trainable_tensors(self) -> list[Any]:
        return [p.detach().cpu() for p in self.model.parameters() if p.requires_grad]

    # -------------------------------------------------------------- evaluate
    def buffers_from_rank_zero(self) -> None:
        """Batch norm's running statistics are each worker's own: evaluation uses rank 0's
        everywhere, so every worker measures the same metric and takes the same early decision."""
        if self.data_parallel:
            import torch.distributed as dist

            for buffer in self.model.buffers():
                dist.broadcast(buffer, src=0)

    @contextmanager
    def inference(self) -> Iterator[None]:
        self.buffers_from_rank_zero()
        self.model.eval()
        try:
            with torch.no_grad(), self.mixed.autocast():
                yield
        finally:
            self.model.train()

    def eval_batches(self, dataset: Any, batch_size: int) -> Iterator[Any]:
        loader = self.loader(dataset, batch_size)
        # Without worker processes (a CPU) a thread loads the next batches while the network runs.
        # The iterator is made here: its seed draw from torch's generator stays where it was.
        return iter(loader) if loader.num_workers else prefetched(iter(loader))

    def predict_batch(self, batch: Any) -> list[dict]:
        return to_device(self.task.predict(self.model, to_device(batch, self.device)), "cpu")

    def state_snapshot(self) -> dict[str, Any]:
        # A data-parallel worker's buffers become rank 0's as evaluation starts (by design): the
        # snapshot is of that state, so only what evaluating itself writes counts as a change.
        self.buffers_from_rank_zero()
        return {name: value.detach().cpu().numpy().copy() for name, value in self.model.state_dict().items()}

    def assign_snapshot(self, snapshot: dict[str, Any]) -> None:
        with torch.no_grad():
            for name, value in self.model.state_dict().items():   # in place: optimizer and DDP keep their tensors
                value.copy_(torch.as_tensor(np.array(snapshot[name], copy=True)))   # np.ascontiguousarray makes 0-d 1-d

    def mode_problem(self, training: bool) -> str:
        if training:
            return "" if self.model.training else "the model in inference mode (model.eval() left on)"
        on = [name or type(self.model).__name__ for name, m in self.model.named_modules() if m.training]
        return f"{len(on)} module(s) in training mode ({', '.join(on[:3])})" if on else ""


def averaged_over_workers(values: dict[str, float], device: Any) -> dict[str, float]:
    """The logged values as the mean of every worker's: one curve, and the same NaN and
    early-check decisions on every worker (one stopping alone would leave the others waiting for
    it in the next gradient exchange). The tensor lives on the job's device: NCCL reduces CUDA
    tensors only, gloo CPU ones."""
    import torch.distributed as dist

    keys = sorted(values)
    summed = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(summed)
    return dict(zip(keys, (summed / dist.get_world_size()).tolist()))
