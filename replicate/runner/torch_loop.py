"""The PyTorch training and evaluation loop every torch Task runs through.

Optimizer and schedule from the recipe, linear LR scaling, AMP and channels-last on CUDA,
atomic checkpoints every N steps with resume from the latest, a NaN/Inf guard, a progress bar,
the learning curve, and the 25% early check against the reference curve.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from models.task import Task
from replicate.errors import DataError, NumericalError
from replicate.jobs import JobResult
from replicate.runner import checkpoint as ckpt
from replicate.runner.grouping import GroupedBatches, aspect_ratio_groups
from replicate.runner.optim import build_optimizer, lr_factor, scaled_lr, total_steps


@dataclass
class RunContext:
    """How to run: where checkpoints go, the device, and what the early check compares with."""

    checkpoint_dir: Path
    device: str = "cpu"
    progress: bool = True
    metric: Optional[str] = None            # the metric the verdict uses; logged on the curve
    direction: str = "higher"
    early_reference: Optional[float] = None  # reference metric at early_fraction of the schedule
    early_fraction: float = 0.25
    early_tolerance: float = 0.5
    stage: str = "environment"              # where the loop is; read by the failure classifier


class EpochSampler(Sampler):
    """Seeded permutation per epoch that can start mid-epoch, so a resumed run sees the same data."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch, self.offset = size, seed, 0, 0

    def set_position(self, epoch: int, offset: int) -> None:
        self.epoch, self.offset = epoch, offset

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=gen)[self.offset:].tolist())

    def __len__(self) -> int:
        return self.size - self.offset


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


class TorchLoop:
    """Runs one job of a torch Task: setup -> train (optional) -> evaluate -> JobResult."""

    def __init__(self, task: Task, cfg: Any, ctx: RunContext, result: JobResult):
        self.task, self.cfg, self.ctx, self.result = task, cfg, ctx, result
        self.tier = cfg.model.tiers[cfg.tier.name]
        self.device = torch.device(ctx.device)
        self.amp = self.device.type == "cuda"
        self.start = time.perf_counter()

    # ----------------------------------------------------------------- setup
    def setup(self) -> None:
        seed_everything(self.cfg.seed)
        self.ctx.stage = "data pipeline"
        self.dataset_hash = self.task.prepare_data()
        self.ctx.stage = "modeling"
        self.model = self.task.build_model(self.task.ctx.variant, self.task.ctx.framework).to(self.device)
        if self.amp:
            self.model = self.model.to(memory_format=torch.channels_last)
        if self.cfg.checkpoint:
            self.load_weights(Path(self.cfg.checkpoint))

    def load_weights(self, path: Path) -> None:
        if not path.is_file():
            raise DataError(str(path), "checkpoint file not found (key: checkpoint)")
        if self.task.load_checkpoint(self.model, path):
            return
        state = torch.load(path, map_location="cpu", weights_only=False)
        if isinstance(state, dict):  # our checkpoints hold "model"; reference repos "state_dict"
            state = state.get("model", state.get("state_dict", state))
        # DataParallel-trained files prefix every key with "module."
        state = {k.removeprefix("module."): v for k, v in state.items()}
        self.model.load_state_dict(state)

    def loader(self, dataset: Any, batch_size: int, sampler: Optional[Sampler] = None) -> DataLoader:
        workers = 0 if self.device.type == "cpu" else min(8, os.cpu_count() or 1)
        common = dict(collate_fn=self.task.collate, num_workers=workers, pin_memory=self.amp)
        factor = self.tier.recipe.aspect_ratio_group_factor if self.tier.recipe else None
        ratios = self.task.aspect_ratios(dataset) if (sampler is not None and factor is not None) else None
        if ratios is not None:
            groups = aspect_ratio_groups(ratios, factor)
            return DataLoader(dataset, batch_sampler=GroupedBatches(sampler, groups, batch_size), **common)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False, drop_last=sampler is not None,
                          **common)

    # ----------------------------------------------------------------- train
    def build_training(self) -> None:
        recipe = self.tier.recipe
        self.ctx.stage = "data pipeline"
        self.train_set = self.task.build_dataset(self.tier.train_split, train=True)
        if len(self.train_set) < recipe.batch_size:
            raise DataError(str(self.cfg.datasets[self.tier.data].root),
                            f"{len(self.train_set)} training samples < batch_size {recipe.batch_size}")
        self.steps, per_unit = total_steps(recipe, len(self.train_set), self.cfg.tier.schedule_fraction)
        lr, self.result.lr_scaling = scaled_lr(recipe)
        self.optimizers = self.task.configure_optimizers(self.model, recipe, lr, build_optimizer)
        self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, lambda s: lr_factor(s, self.steps, per_unit, recipe))
                           for k, o in self.optimizers.items()}
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and not self.task.manual_optimization)
        self.result.steps_planned = self.steps
        self.step, self.train_s = 0, 0.0

    def state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "step": self.step, "train_s": self.train_s,
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
                "scaler": self.scaler.state_dict(), "curve": self.result.curve,
                "images_seen": self.result.images_seen, "early_check": self.result.early_check,
                "restarts": self.result.restarts, "lost_s": self.result.times.lost_s,
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}}

    def resume(self) -> None:
        """Continue from the latest checkpoint; the work since it counts as time lost to restarts."""
        state = ckpt.load_latest(self.ctx.checkpoint_dir)
        if state is None:
            return
        self.model.load_state_dict(state["model"])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(state["schedulers"][k])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.train_s = state["step"], state["train_s"]
        self.result.curve, self.result.images_seen = state["curve"], state["images_seen"]
        self.result.early_check = state["early_check"]
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        heartbeat = ckpt.read_json(self.ctx.checkpoint_dir / ckpt.PROGRESS) or {}
        lost = max(0.0, heartbeat.get("train_s", self.train_s) - self.train_s)
        self.result.restarts = state["restarts"] + 1
        self.result.times.lost_s = state["lost_s"] + lost

    def batches(self) -> Iterator[Any]:
        batch_size = self.tier.recipe.batch_size
        per_epoch = len(self.train_set) // batch_size
        sampler = EpochSampler(len(self.train_set), self.cfg.seed)
        epoch, offset = divmod(self.step, per_epoch)
        # With aspect-ratio grouping a resumed epoch skips the same number of samples, which is
        # close to, not exactly, the batches already seen: grouping reorders within an epoch.
        while True:
            sampler.set_position(epoch, offset * batch_size)
            yield from self.loader(self.train_set, batch_size, sampler)
            epoch, offset = epoch + 1, 0

    def train_step(self, batch: Any) -> dict[str, float]:
        batch = to_device(batch, self.device)
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.amp else nullcontext()
        if self.task.manual_optimization:  # the task steps its own optimizers (GANs)
            with autocast:
                out = self.task.training_step(self.model, batch, self.optimizers)
        else:
            optimizer = self.optimizers["main"]
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                out = self.task.training_step(self.model, batch)
            self.check_finite(out["loss"])
            self.scaler.scale(out["loss"]).backward()
            if self.tier.recipe.grad_clip:
                self.scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tier.recipe.grad_clip)
            self.scaler.step(optimizer)
            self.scaler.update()
        for sched in self.schedulers.values():
            sched.step()
        values = {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in out.items()}
        self.check_finite(values["loss"])
        self.result.images_seen += self.task.batch_size_of(batch)
        return values

    def check_finite(self, loss: Any) -> None:
        value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
        if not math.isfinite(value):
            raise NumericalError(f"loss is {value} at step {self.step + 1}")

    def train(self) -> None:
        recipe = self.tier.recipe
        self.ctx.stage = "training"
        early_step = math.ceil(self.ctx.early_fraction * self.steps)
        self.label = f"{self.cfg.model.name}/{self.cfg.tier.name}/s{self.cfg.seed}"
        bar = tqdm(total=self.steps, initial=self.step, desc=self.label, file=sys.stderr, disable=not self.ctx.progress,
                   mininterval=2.0, dynamic_ncols=True)
        data = self.batches()
        self.model.train()
        tick = time.perf_counter()
        while self.step < self.steps:
            values = self.train_step(next(data))
            self.step += 1
            bar.update(1)
            if self.step % recipe.log_every == 0 or self.step == self.steps:
                self.train_s += time.perf_counter() - tick
                tick = time.perf_counter()
                self.log(values, bar)
            if self.step % recipe.checkpoint_every == 0:
                self.train_s += time.perf_counter() - tick
                tick = time.perf_counter()
                ckpt.save(self.ctx.checkpoint_dir, self.state())
            if self.wants_eval(early_step):
                self.train_s += time.perf_counter() - tick
                aborted = self.curve_eval(early_step)
                tick = time.perf_counter()
                self.ctx.stage = "training"
                if aborted:
                    break
        self.train_s += time.perf_counter() - tick
        bar.close()

    def log(self, values: dict[str, float], bar: tqdm) -> None:
        lr = self.schedulers[next(iter(self.schedulers))].get_last_lr()[0]
        self.result.curve.append({"step": self.step, "train_s": round(self.train_s, 3), "lr": lr, **values})
        bar.set_postfix(loss=f"{values['loss']:.3f}", refresh=False)
        tenth = max(1, self.steps // 10)
        if bar.disable and (self.step // tenth) != ((self.step - self.tier.recipe.log_every) // tenth):
            # No bar (a Ray worker's stderr is not a terminal): a line every 10% instead.
            print(f"{self.label}: step {self.step}/{self.steps} loss {values['loss']:.4f} ({self.train_s:.0f}s)",
                  file=sys.stderr, flush=True)
        ckpt.write_json(self.ctx.checkpoint_dir / ckpt.PROGRESS, {"step": self.step, "train_s": self.train_s})

    def wants_eval(self, early_step: int) -> bool:
        every = self.tier.recipe.eval_every
        early = self.ctx.early_reference is not None and self.step == early_step and "step" not in self.result.early_check
        periodic = bool(every) and self.step % every == 0 and self.step < self.steps
        return early or periodic

    def curve_eval(self, early_step: int) -> bool:
        """Evaluate mid-run for the curve; at the early step, judge it. True means abort."""
        metrics = self.evaluate(self.tier.recipe.eval_batches)
        value = metrics.get(self.ctx.metric) if self.ctx.metric else None
        self.result.curve.append({"step": self.step, "train_s": round(self.train_s, 3), **metrics})
        if self.step != early_step or self.ctx.early_reference is None or value is None:
            return False
        ref, tol = self.ctx.early_reference, self.ctx.early_tolerance
        floor = ref * (1 - tol) if self.ctx.direction == "higher" else ref * (1 + tol)
        below = value < floor if self.ctx.direction == "higher" else value > floor
        per_step = self.train_s / max(1, self.step)
        self.result.early_check = {"step": self.step, "fraction": self.ctx.early_fraction, "metric": value,
                                   "reference": ref, "threshold": floor, "aborted": below,
                                   "saved_train_s": per_step * (self.steps - self.step) if below else 0.0}
        ckpt.save(self.ctx.checkpoint_dir, self.state())
        return below

    # -------------------------------------------------------------- evaluate
    def evaluate(self, max_batches: Optional[int] = None) -> dict[str, float]:
        self.ctx.stage = "evaluation"
        began = time.perf_counter()
        if not hasattr(self, "val_set"):
            self.val_set = self.task.build_dataset(self.tier.eval_split, train=False)
        evaluator = self.task.build_evaluator(self.tier.eval_split)
        batch_size = self.tier.recipe.batch_size if self.tier.recipe else 8
        self.model.eval()
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.amp else nullcontext()
        with torch.no_grad(), autocast:
            for i, batch in enumerate(self.loader(self.val_set, batch_size)):
                if max_batches is not None and i >= max_batches:
                    break
                preds = self.task.predict(self.model, to_device(batch, self.device))
                evaluator.update(to_device(preds, "cpu"))
        metrics = {k: float(v) for k, v in evaluator.compute().items()}
        for key, value in metrics.items():
            if not math.isfinite(value):
                raise NumericalError(f"metric {key} is {value}")
        self.model.train()
        self.result.times.eval_s += time.perf_counter() - began
        return metrics

    # ------------------------------------------------------------------- run
    def run(self) -> JobResult:
        self.setup()
        if self.cfg.tier.trains:
            self.build_training()
            self.resume()
            self.result.times.setup_s = time.perf_counter() - self.start
            self.train()
            self.result.steps_done = self.step
            self.result.times.train_s = self.train_s
            if self.train_s > 0:
                self.result.throughput = self.result.images_seen / self.train_s
        else:
            self.result.times.setup_s = time.perf_counter() - self.start
        self.result.environment["dataset_hash"] = self.dataset_hash
        if self.result.early_check.get("aborted"):
            self.result.metrics = {k: v for k, v in self.result.curve[-1].items() if k not in ("step", "train_s")}
        else:
            self.result.metrics = self.evaluate(self.tier.recipe.eval_batches if self.tier.recipe else None)
            if self.cfg.tier.trains:
                self.result.curve.append({"step": self.step, "train_s": round(self.train_s, 3), **self.result.metrics})
        return self.result
