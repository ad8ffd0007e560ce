"""The TensorFlow training and evaluation loop: the runner contract of torch_loop.py in TF.

Same recipe (optimizer, linear LR scaling, warm-up and schedule from replicate/runner/optim.py),
same data order (batch_order.BatchOrder), same atomic checkpoints with resume (``latest.pt``
holding numpy arrays, written by replicate/runner/checkpoint.py), same NaN guard, progress bar,
curve and 25% early check (replicate/runner/base_loop.py, shared with the torch loop), same
JobResult, so verdicts, the store and the reports do not know which framework ran. The step is a
``tf.function`` run under the hardware profile's distribution strategy (replicate/runner/strategy.py).

A Task registered for "tensorflow" runs here (runner/worker.py LOOPS): its ``build_model`` returns a
Keras model, ``collate`` returns (arrays, targets) and ``training_step(model, tensors)`` is
traceable TensorFlow.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, ContextManager, Iterator, Optional, Sequence

import numpy as np

from replicate.config.schema import Optimizer
from replicate.errors import ConfigError, DataError
from replicate.jobs import JobResult
from replicate.runner import checkpoint as ckpt
from replicate.runner.base_loop import BaseLoop, RunContext
from replicate.runner.batch_order import BatchOrder
from replicate.runner.optim import lr_factor, scaled_lr, total_steps
from replicate.runner.schedule_check import keras_applied


def build_tf_optimizer(tf: Any, recipe: Any, lr: float, undecayed: Sequence[Any] = ()) -> Any:
    """The Keras optimizer of a recipe, with torch's conventions (eps 1e-8; L2 decay in the step,
    torch_style_gradients). AdamW decays in Keras: ``undecayed`` variables are excluded there."""
    opt = tf.keras.optimizers
    if recipe.optimizer == Optimizer.SGD:
        return opt.SGD(learning_rate=lr, momentum=float(recipe.momentum))
    betas = tuple(float(b) for b in recipe.betas)
    if recipe.optimizer == Optimizer.ADAMW:
        adamw = opt.AdamW(learning_rate=lr, weight_decay=float(recipe.weight_decay), beta_1=betas[0],
                          beta_2=betas[1], epsilon=1e-8)
        if undecayed:
            adamw.exclude_from_weight_decay(var_list=list(undecayed))
        return adamw
    return opt.Adam(learning_rate=lr, beta_1=betas[0], beta_2=betas[1], epsilon=1e-8)


def decay_mask(decayed: Optional[Sequence[Any]], variables: Sequence[Any]) -> Optional[list[bool]]:
    """Which of ``variables`` take weight decay (Task.decayed_parameters); None: all of them."""
    if decayed is None:
        return None
    chosen = {id(v) for v in decayed}
    return [id(v) in chosen for v in variables]


def torch_style_gradients(tf: Any, recipe: Any, grads: list, variables: list, replicas: int = 1,
                          decayed: Optional[Sequence[bool]] = None) -> list:
    """torch's update on the global batch: L2 (coupled) decay added once, on the variables
    ``decayed`` marks (decay_mask; None: all), the aggregate clipped.

    Keras sums the replicas' gradients inside ``apply_gradients``, after this runs, so decay
    added per replica would count n times and a per-replica clip would bound the wrong norm.
    With decay or clipping on n replicas: sum here, apply both to the global gradient, and
    hand Keras 1/n of it per replica; its sum is then the global gradient.
    """
    decay = float(recipe.weight_decay or 0.0) if recipe.optimizer != Optimizer.ADAMW else 0.0  # AdamW: Keras decays
    clip = float(recipe.grad_clip or 0.0)
    present = [i for i, g in enumerate(grads) if g is not None]  # as torch, no gradient: no decay
    if not (decay or clip) or not present:
        return grads
    kept = [grads[i] for i in present]
    if replicas > 1:
        kept = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, kept)
    if decay:
        kept = [g + decay * variables[i] if decayed is None or decayed[i] else g for g, i in zip(kept, present)]
    if clip:
        kept, _ = tf.clip_by_global_norm(kept, clip)
    out = list(grads)
    for i, g in zip(present, kept):
        out[i] = g / replicas if replicas > 1 else g
    return out


class TfLoop(BaseLoop):
    """Runs one job of a TensorFlow task: setup -> train (optional) -> evaluate -> JobResult."""

    label_suffix = "/tf"
    lr_float32 = True   # Keras keeps the rate in a float32 variable

    def __init__(self, task: Any, cfg: Any, ctx: RunContext, result: JobResult):
        from replicate.runner.strategy import make_strategy
        from replicate.tf_import import tensorflow

        # The device TF places on: the profile's accelerator kind (the strategy picks the devices).
        ctx.device = "cpu" if cfg.hardware.accelerator == "cpu" else str(cfg.hardware.accelerator)
        super().__init__(task, cfg, ctx, result)
        self.tf = tensorflow(ctx.threads)
        # A worker without the profile's accelerators raises ResourceUnavailable: run_job turns it
        # into an INFRA result (replicate.failures.classify), the cluster's fault, not the model's.
        self.strategy = make_strategy(cfg.hardware, self.tf)
        self.result.environment["tf_strategy"] = type(self.strategy).__name__
        # No Keras mixed-precision policy is set: float32 throughout, as darknet (validation refuses
        # precision=amp for TensorFlow jobs).
        self.result.environment["precision"] = "fp32"

    # ----------------------------------------------------------------- setup
    def setup(self) -> None:
        self.tf.keras.utils.set_random_seed(self.seed)  # python, numpy and TF seeds
        if self.cfg.tier.get("deterministic"):
            self.tf.config.experimental.enable_op_determinism()
        self.ctx.stage = "data pipeline"
        self.dataset_hash = self.task.prepare_data()
        self.ctx.stage = "modeling"
        with self.strategy.scope():
            self.model = self.task.build_model(self.task.ctx.variant)
        self.load_job_weights()

    @staticmethod
    def load_state_into(model: Any, path: Path) -> None:
        state = ckpt.load_latest(path.parent) if path.name == ckpt.LATEST else None
        if state is None or "tf_model" not in state:
            raise DataError(str(path), "not a TensorFlow-loop checkpoint or a Darknet .weights file")
        TfLoop._assign(model.weights, state["tf_model"], path)

    @staticmethod
    def _assign(variables: list, values: list, source: Path) -> None:
        """Assign arrays in order, after checking every shape.

        A checkpoint of another variant can hold as many arrays as this model; only the shapes
        tell it apart, and a mismatch found mid-way would leave the model half-assigned.
        """
        if len(variables) != len(values):
            raise DataError(str(source), f"holds {len(values)} arrays, the model has {len(variables)} variables "
                                         "(a checkpoint of another model or variant?)")
        for variable, value in zip(variables, values):
            if tuple(variable.shape) != tuple(value.shape):
                raise DataError(str(source), f"variable {variable.path} has shape {tuple(variable.shape)}, the "
                                             f"checkpoint's array {tuple(value.shape)} (another variant?)")
        for variable, value in zip(variables, values):
            variable.assign(ckpt.tensor_to_array(value))

    # ----------------------------------------------------------------- train
    def build_training(self) -> None:
        recipe = self.tier.recipe
        self.build_train_set()
        replicas = self.strategy.num_replicas_in_sync
        if recipe.batch_size % replicas:  # _inputs gives every replica the same share of the batch
            raise ConfigError(f"model.tiers.{self.cfg.tier.name}.recipe.batch_size",
                              f"{recipe.batch_size} is not a multiple of the {replicas} replicas of hardware="
                              f"{self.cfg.hardware.name}")
        self.steps, self.per_unit = total_steps(recipe, len(self.train_set), self.cfg.tier.schedule_fraction)
        self.base_lr, self.result.lr_scaling = scaled_lr(recipe)
        variables = self.model.trainable_variables
        self.decayed = decay_mask(self.task.decayed_parameters(self.model, recipe), variables)
        undecayed = [v for v, d in zip(variables, self.decayed or []) if not d]
        with self.strategy.scope():
            self.optimizer = build_tf_optimizer(self.tf, recipe, self.base_lr, undecayed)
            self.optimizer.build(variables)
        self.result.steps_planned = self.steps
        self.step, self.train_s = 0, 0.0
        self.compiled_step = self.tf.function(self._distributed_step, autograph=False, reduce_retracing=True)

    def current_lr(self) -> float:
        return self.base_lr * lr_factor(self.step, self.steps, self.per_unit, self.tier.recipe)

    def _replica_step(self, arrays: dict[str, Any]) -> dict[str, Any]:
        variables = self.model.trainable_variables
        with self.tf.GradientTape() as tape:
            out = self.task.training_step(self.model, arrays)
            # each replica's loss is a mean over its share; Keras sums the replicas' gradients
            loss = out["loss"] / self.strategy.num_replicas_in_sync
        grads = torch_style_gradients(self.tf, self.tier.recipe, tape.gradient(loss, variables), variables,
                                      self.strategy.num_replicas_in_sync, self.decayed)
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

    def framework_state(self) -> dict[str, Any]:
        # as torch tensors: a weights-only load reads tensors, not numpy arrays
        return {"tf_model": [ckpt.array_to_tensor(v.numpy()) for v in self.model.weights],
                "tf_optimizer": [ckpt.array_to_tensor(v.numpy()) for v in self.optimizer.variables]}

    def restore(self, state: dict[str, Any]) -> None:
        source = self.ctx.checkpoint_dir / ckpt.LATEST
        if "tf_model" not in state:
            raise DataError(str(source), "is not a TensorFlow-loop checkpoint")
        self._assign(self.model.weights, state["tf_model"], source)
        self._assign(self.optimizer.variables, state["tf_optimizer"], source)

    def trainable_tensors(self) -> list[Any]:
        return [ckpt.array_to_tensor(v.numpy()) for v in self.model.trainable_variables]

    def batches(self) -> Iterator[Any]:
        """The torch loop's order (same BatchOrder, no grouping), so a resumed run sees the same data."""
        order = BatchOrder(len(self.train_set), self.seed, self.tier.recipe.batch_size)
        epoch, offset = order.position(self.step)
        while True:
            self.start_epoch(epoch)
            for indices in order.epoch(epoch)[offset:]:
                yield self.task.collate([self.train_set[j] for j in indices])
            epoch, offset = epoch + 1, 0

    def train_step(self, batch: Any) -> dict[str, float]:
        self.optimizer.learning_rate.assign(self.current_lr())
        out = self.compiled_step(self._inputs(batch[0]))
        self.applied_lr = keras_applied(self.optimizer)   # the variable the compiled step read
        values = {k: float(v) for k, v in out.items()}
        self.check_finite(values["loss"])
        self.result.images_seen += self.task.batch_size_of(batch)
        return values

    # -------------------------------------------------------------- evaluate
    def inference(self) -> ContextManager:
        return nullcontext()  # predict() calls the model with training=False: nothing to switch

    def eval_batches(self, dataset: Any, batch_size: int) -> Iterator[Any]:
        for start in range(0, len(dataset), batch_size):
            yield self.task.eval_collate([dataset[j] for j in range(start, min(start + batch_size, len(dataset)))])

    def predict_batch(self, batch: Any) -> list[dict]:
        return self.task.predict(self.model, batch)

    def state_snapshot(self) -> dict[str, Any]:
        # Keras has no mode on the model (each call says training=): a batch norm called in training
        # mode during evaluation shows here, as its moving statistics move.
        return {f"{index}:{w.path}": np.array(w.numpy(), copy=True) for index, w in enumerate(self.model.weights)}

    def assign_snapshot(self, snapshot: dict[str, Any]) -> None:
        for index, weight in enumerate(self.model.weights):
            weight.assign(snapshot[f"{index}:{weight.path}"])


def tf_preflight(task: Any, model: Any, batch: Any, recipe: Any, steps: int,
                 drop: float) -> list[tuple[str, bool, str]]:
    """``replicate check``'s shapes, gradients and overfit checks for a TensorFlow task.

    The same criteria as replicate/check.py's torch checks: every head has a shape, every
    trainable variable gets a finite gradient, and ``steps`` steps on one batch bring the loss
    below ``drop`` x its first value.
    """
    from replicate.runner.norm_statistics import statistics_moved
    from replicate.tf_import import tensorflow

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
    sgd = recipe is not None and recipe.optimizer == Optimizer.SGD
    optimizer = tf.keras.optimizers.SGD(float(recipe.lr), momentum=0.9) if sgd else tf.keras.optimizers.Adam(1e-3)

    def step(a: dict) -> Any:
        with tf.GradientTape() as tape:
            value = task.training_step(model, a)["loss"]
        optimizer.apply_gradients(zip(tape.gradient(value, variables), variables))
        return value

    statistics = [v for v in model.non_trainable_variables if v.path.endswith(("moving_mean", "moving_variance"))]
    before = [v.numpy().copy() for v in statistics]
    compiled, began = tf.function(step, autograph=False), time.perf_counter()
    losses = [float(compiled(arrays)) for _ in range(steps)]
    first, last = losses[0], min(losses[-5:])
    report.append(("overfit", last < drop * first, f"one batch, {steps} steps: loss {first:.3f} -> {last:.3f} "
                   f"(needs < {drop:.0%} of the first; {time.perf_counter() - began:.1f}s, tensorflow)"))
    unchanged = [bool(np.array_equal(b, v.numpy())) for b, v in zip(before, statistics)]
    report.append(("statistics", *statistics_moved([v.path for v in statistics], unchanged)))
    return report
