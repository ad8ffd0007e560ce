"""The TensorFlow training and evaluation loop: the runner contract of torch_loop.py in TF.

Same recipe (optimizer, linear LR scaling, warm-up and schedule from replicate/runner/optim.py),
same data order (torch_loop.EpochSampler), same atomic checkpoints with resume (``latest.pt``
holding numpy arrays, written by replicate/runner/checkpoint.py), same NaN guard, progress bar,
curve and 25% early check (inherited from TorchLoop), same JobResult, so verdicts, the store and
the reports do not know which framework ran. The step is a ``tf.function`` run under the
hardware profile's distribution strategy (replicate/runner/strategy.py).

A Task runs here through ``task.framework_task("tensorflow")``: its ``build_model`` returns a
Keras model, ``collate`` returns (arrays, targets) and ``training_step(model, tensors)`` is
traceable TensorFlow.
"""

from __future__ import annotations

import math
import random
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from tqdm import tqdm

from replicate.errors import DataError, NumericalError
from replicate.jobs import JobResult
from replicate.runner import checkpoint as ckpt
from replicate.runner.optim import lr_factor, scaled_lr, total_steps
from replicate.runner.torch_loop import EpochSampler, RunContext, TorchLoop


def build_tf_optimizer(tf: Any, recipe: Any, lr: float) -> Any:
    """The Keras optimizer of a recipe, with torch's conventions (eps 1e-8; L2 decay in the step)."""
    opt = tf.keras.optimizers
    if recipe.optimizer == "sgd":
        return opt.SGD(learning_rate=lr, momentum=float(recipe.momentum))
    betas = tuple(float(b) for b in recipe.betas)
    if recipe.optimizer == "adamw":
        return opt.AdamW(learning_rate=lr, weight_decay=float(recipe.weight_decay), beta_1=betas[0],
                         beta_2=betas[1], epsilon=1e-8)
    return opt.Adam(learning_rate=lr, beta_1=betas[0], beta_2=betas[1], epsilon=1e-8)


class TfLoop(TorchLoop):
    """Runs one job of a TensorFlow task: setup -> train (optional) -> evaluate -> JobResult."""

    def __init__(self, task: Any, cfg: Any, ctx: RunContext, result: JobResult, num_threads: int | None = None):
        from models.darknet.tf_backend import tensorflow
        from replicate.runner.strategy import make_strategy

        self.task, self.cfg, self.ctx, self.result = task, cfg, ctx, result
        self.tier = cfg.model.tiers[cfg.tier.name]
        self.start = time.perf_counter()
        self.tf = tensorflow(num_threads)
        self.strategy = make_strategy(cfg.hardware, self.tf)
        self.result.environment["tf_strategy"] = type(self.strategy).__name__

    # ----------------------------------------------------------------- setup
    def setup(self) -> None:
        self.tf.keras.utils.set_random_seed(int(self.cfg.seed))  # python, numpy and TF seeds
        self.ctx.stage = "data pipeline"
        self.dataset_hash = self.task.prepare_data()
        self.ctx.stage = "modeling"
        with self.strategy.scope():
            self.model = self.task.build_model(self.task.ctx.variant, "tensorflow")
        if self.cfg.checkpoint:
            self.load_weights(Path(self.cfg.checkpoint))

    def load_weights(self, path: Path) -> None:
        if not path.is_file():
            raise DataError(str(path), "checkpoint file not found (key: checkpoint)")
        if self.task.load_checkpoint(self.model, path):
            return
        state = ckpt.load_latest(path.parent) if path.name == ckpt.LATEST else None
        if state is None or "tf_model" not in state:
            raise DataError(str(path), "not a TensorFlow-loop checkpoint or a Darknet .weights file")
        self._assign(self.model.weights, state["tf_model"])

    @staticmethod
    def _assign(variables: list, values: list) -> None:
        if len(variables) != len(values):
            raise DataError("checkpoint", f"holds {len(values)} arrays, the model has {len(variables)} variables")
        for variable, value in zip(variables, values):
            variable.assign(value)

    # ----------------------------------------------------------------- train
    def build_training(self) -> None:
        recipe = self.tier.recipe
        self.ctx.stage = "data pipeline"
        self.train_set = self.task.build_dataset(self.tier.train_split, train=True)
        if len(self.train_set) < recipe.batch_size:
            raise DataError(str(self.cfg.datasets[self.tier.data].root),
                            f"{len(self.train_set)} training samples < batch_size {recipe.batch_size}")
        self.steps, self.per_unit = total_steps(recipe, len(self.train_set), self.cfg.tier.schedule_fraction)
        self.base_lr, self.result.lr_scaling = scaled_lr(recipe)
        with self.strategy.scope():
            self.optimizer = build_tf_optimizer(self.tf, recipe, self.base_lr)
            self.optimizer.build(self.model.trainable_variables)
        self.result.steps_planned = self.steps
        self.step, self.train_s = 0, 0.0
        self.compiled_step = self.tf.function(self._distributed_step, autograph=False, reduce_retracing=True)

    def current_lr(self) -> float:
        return self.base_lr * lr_factor(self.step, self.steps, self.per_unit, self.tier.recipe)

    def _replica_step(self, arrays: dict[str, Any]) -> dict[str, Any]:
        tf, recipe = self.tf, self.tier.recipe
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            out = self.task.training_step(self.model, arrays)
            loss = out["loss"] / self.strategy.num_replicas_in_sync
        grads = tape.gradient(loss, variables)
        if recipe.weight_decay and recipe.optimizer != "adamw":  # torch's L2 (coupled) decay
            grads = [g + float(recipe.weight_decay) * v for g, v in zip(grads, variables)]
        if recipe.grad_clip:
            grads, _ = tf.clip_by_global_norm(grads, float(recipe.grad_clip))
        self.optimizer.apply_gradients(zip(grads, variables))
        return out

    def _distributed_step(self, arrays: dict[str, Any]) -> dict[str, Any]:
        if self.strategy.num_replicas_in_sync == 1:
            return self._replica_step(arrays)
        per_replica = self.strategy.run(self._replica_step, args=(arrays,))
        mean = self.tf.distribute.ReduceOp.MEAN
        return {k: self.strategy.reduce(mean, v, axis=None) for k, v in per_replica.items()}

    def _inputs(self, arrays: dict[str, np.ndarray]) -> Any:
        n = self.strategy.num_replicas_in_sync
        if n == 1:
            return {k: self.tf.convert_to_tensor(v) for k, v in arrays.items()}
        # replica i takes every n-th image (the batch size is a multiple of n on TPU/GPU profiles)
        return self.strategy.experimental_distribute_values_from_function(
            lambda c: {k: v[c.replica_id_in_sync_group::n] for k, v in arrays.items()})

    def state(self) -> dict[str, Any]:
        return {"tf_model": [v.numpy() for v in self.model.weights],
                "tf_optimizer": [v.numpy() for v in self.optimizer.variables],
                "step": self.step, "train_s": self.train_s, "curve": self.result.curve,
                "images_seen": self.result.images_seen, "early_check": self.result.early_check,
                "restarts": self.result.restarts, "lost_s": self.result.times.lost_s,
                "rng": {"numpy": np.random.get_state(), "python": random.getstate()}}

    def resume(self) -> None:
        """Continue from the latest checkpoint; the work since it counts as time lost to restarts."""
        state = ckpt.load_latest(self.ctx.checkpoint_dir)
        if state is None:
            return
        if "tf_model" not in state:
            raise DataError(str(self.ctx.checkpoint_dir / ckpt.LATEST), "is not a TensorFlow-loop checkpoint")
        self._assign(self.model.weights, state["tf_model"])
        self._assign(self.optimizer.variables, state["tf_optimizer"])
        self.step, self.train_s = state["step"], state["train_s"]
        self.result.curve, self.result.images_seen = state["curve"], state["images_seen"]
        self.result.early_check = state["early_check"]
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        heartbeat = ckpt.read_json(self.ctx.checkpoint_dir / ckpt.PROGRESS) or {}
        self.result.restarts = state["restarts"] + 1
        self.result.times.lost_s = state["lost_s"] + max(0.0, heartbeat.get("train_s", self.train_s) - self.train_s)

    def batches(self) -> Iterator[Any]:
        """The torch loop's order (same EpochSampler), so a resumed run sees the same data."""
        batch_size = self.tier.recipe.batch_size
        per_epoch = len(self.train_set) // batch_size
        sampler = EpochSampler(len(self.train_set), self.cfg.seed)
        epoch, offset = divmod(self.step, per_epoch)
        while True:
            sampler.set_position(epoch, offset * batch_size)
            order = list(sampler)
            for i in range(0, len(order) - batch_size + 1, batch_size):   # drop_last, as torch
                yield self.task.collate([self.train_set[j] for j in order[i:i + batch_size]])
            epoch, offset = epoch + 1, 0

    def train_step(self, batch: Any) -> dict[str, float]:
        self.optimizer.learning_rate.assign(self.current_lr())
        out = self.compiled_step(self._inputs(batch[0]))
        values = {k: float(v) for k, v in out.items()}
        self.check_finite(values["loss"])
        self.result.images_seen += self.task.batch_size_of(batch)
        return values

    def train(self) -> None:
        recipe = self.tier.recipe
        self.ctx.stage = "training"
        early_step = math.ceil(self.ctx.early_fraction * self.steps)
        self.label = f"{self.cfg.model.name}/{self.cfg.tier.name}/s{self.cfg.seed}/tf"
        bar = tqdm(total=self.steps, initial=self.step, desc=self.label, file=sys.stderr, disable=not self.ctx.progress,
                   mininterval=2.0, dynamic_ncols=True)
        data = self.batches()
        tick = time.perf_counter()
        while self.step < self.steps:
            values = self.train_step(next(data))
            self.step += 1
            bar.update(1)
            if self.step % recipe.log_every == 0 or self.step == self.steps:
                self.train_s, tick = self.train_s + time.perf_counter() - tick, time.perf_counter()
                self.log(values, bar)
            if self.step % recipe.checkpoint_every == 0:
                self.train_s, tick = self.train_s + time.perf_counter() - tick, time.perf_counter()
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
        self.result.curve.append({"step": self.step, "train_s": round(self.train_s, 3), "lr": self.current_lr(),
                                  **values})
        bar.set_postfix(loss=f"{values['loss']:.3f}", refresh=False)
        tenth = max(1, self.steps // 10)
        if bar.disable and (self.step // tenth) != ((self.step - self.tier.recipe.log_every) // tenth):
            print(f"{self.label}: step {self.step}/{self.steps} loss {values['loss']:.4f} ({self.train_s:.0f}s)",
                  file=sys.stderr, flush=True)
        ckpt.write_json(self.ctx.checkpoint_dir / ckpt.PROGRESS, {"step": self.step, "train_s": self.train_s})

    # -------------------------------------------------------------- evaluate
    def evaluate(self, max_batches: int | None = None) -> dict[str, float]:
        self.ctx.stage = "evaluation"
        began = time.perf_counter()
        if not hasattr(self, "val_set"):
            self.val_set = self.task.build_dataset(self.tier.eval_split, train=False)
        evaluator = self.task.build_evaluator(self.tier.eval_split)
        batch_size = self.tier.recipe.batch_size if self.tier.recipe else 8
        for i, start in enumerate(range(0, len(self.val_set), batch_size)):
            if max_batches is not None and i >= max_batches:
                break
            items = [self.val_set[j] for j in range(start, min(start + batch_size, len(self.val_set)))]
            evaluator.update(self.task.predict(self.model, self.task.collate(items)))
        metrics = {k: float(v) for k, v in evaluator.compute().items()}
        for key, value in metrics.items():
            if not math.isfinite(value):
                raise NumericalError(f"metric {key} is {value}")
        self.result.times.eval_s += time.perf_counter() - began
        return metrics


def tf_preflight(task: Any, model: Any, batch: Any, recipe: Any, steps: int,
                 drop: float) -> list[tuple[str, bool, str]]:
    """``replicate check``'s shapes, gradients and overfit checks for a TensorFlow task.

    The same criteria as replicate/check.py's torch checks: every head has a shape, every
    trainable variable gets a finite gradient, and ``steps`` steps on one batch bring the loss
    below ``drop`` x its first value.
    """
    from models.darknet.tf_backend import tensorflow

    tf = tensorflow()
    shapes = task.output_shapes(model, batch)
    report = [("shapes", bool(shapes) and all(len(s) > 0 for s in shapes.values()),
               ", ".join(f"{k}{list(v)}" for k, v in shapes.items()) or "no outputs")]
    arrays = {k: tf.convert_to_tensor(v) for k, v in batch[0].items()}
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        loss = task.training_step(model, arrays)["loss"]
    grads = tape.gradient(loss, variables)
    missing = [v.path for v, g in zip(variables, grads) if g is None or not bool(tf.reduce_all(tf.math.is_finite(g)))]
    detail = f"{len(variables) - len(missing)}/{len(variables)} trainable variables get finite gradients"
    report.append(("gradients", not missing, detail + (f"; none reach: {', '.join(missing[:5])}" if missing else "")))
    sgd = recipe is not None and recipe.optimizer == "sgd"
    optimizer = tf.keras.optimizers.SGD(float(recipe.lr), momentum=0.9) if sgd else tf.keras.optimizers.Adam(1e-3)

    def step(a: dict) -> Any:
        with tf.GradientTape() as tape:
            value = task.training_step(model, a)["loss"]
        optimizer.apply_gradients(zip(tape.gradient(value, variables), variables))
        return value

    compiled, began = tf.function(step, autograph=False), time.perf_counter()
    losses = [float(compiled(arrays)) for _ in range(steps)]
    first, last = losses[0], min(losses[-5:])
    report.append(("overfit", last < drop * first, f"one batch, {steps} steps: loss {first:.3f} -> {last:.3f} "
                   f"(needs < {drop:.0%} of the first; {time.perf_counter() - began:.1f}s, tensorflow)"))
    return report
