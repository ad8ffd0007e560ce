"""The framework-neutral training and evaluation loop: what the PyTorch and TensorFlow loops share.

``run`` (setup -> train -> evaluate -> JobResult), the training skeleton with its cadence (log
every N steps, checkpoint every N steps, mid-run evaluations for the curve, the 25% early check),
the NaN/Inf guard, the progress bar and heartbeat, resume bookkeeping (step, curve, RNGs, time
lost to restarts) and the evaluation pass. A framework loop (torch_loop.py, tf_loop.py) supplies
the hooks: ``setup``, ``build_training``, ``batches``, ``train_step``, ``current_lr``,
``framework_state``/``restore``, and ``inference``/``eval_batches``/``predict_batch``.
"""

from __future__ import annotations

import abc
import itertools
import math
import random
import sys
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from tqdm import tqdm

from replicate.config.schema import EARLY_FRACTION
from replicate.config.selection import job_data, model_tier
from replicate.data.augment_random import augmentation_random
from replicate.data.leakage import check_no_leak
from replicate.errors import DataError, NumericalError, PathInvariantBroken
from replicate.failures import is_oom
from replicate.jobs import JobResult
from replicate.runner import attempts
from replicate.runner import checkpoint as ckpt
from replicate.runner.evaluation_reference import check_evaluation_reference
from replicate.runner.optim import scaled_lr, total_steps
from replicate.runner.path_invariants import check_evaluation_path, preserved_random_streams
from replicate.runner.schedule_check import RecipeSchedule, check_step
from replicate.runner.stop_request import StopRequest, deferred_stops
from replicate.verdict import EarlyCheck, early_loss, weight_drift
from replicate.weights_file import verify, weights_for


@dataclass
class RunContext:
    """How to run: where checkpoints go, the device, and what the early check compares with."""

    checkpoint_dir: Path
    device: str = "cpu"
    progress: bool = True
    metric: Optional[str] = None            # the metric the verdict uses; logged on the curve
    # The early check's thresholds and rule (verdict.EarlyCheck, resolved with the job). The default
    # judges nothing and does not stop: a loop built without a job (tests, benchmarks).
    early: EarlyCheck = field(default_factory=lambda: EarlyCheck(fraction=EARLY_FRACTION))
    # Stop at the early check after measuring its loss and weight drift, without evaluating: a
    # calibration replay of a recorded draw's first quarter (replicate calibrate --early-only).
    stop_at_early: bool = False
    stage: str = "environment"              # where the loop is; read by the failure classifier
    stopped_by: str = ""                    # the signal that stopped training at a checkpointed step
    # Data parallelism (replicate/runner/data_parallel.py): this worker's rank among world_size;
    # 1 worker runs the single-process path unchanged.
    rank: int = 0
    world_size: int = 1
    threads: int = 1                        # the job's CPU threads (ResolvedJob.threads), set in its pools


class BaseLoop(abc.ABC):
    """Runs one job of a Task: setup -> train (optional) -> evaluate -> JobResult."""

    label_suffix = ""  # appended to the progress label, so a log line tells the frameworks apart
    lr_float32 = False  # the framework keeps the learning rate in a float32 variable (Keras)

    def __init__(self, task: Any, cfg: Any, ctx: RunContext, result: JobResult):
        self.task, self.cfg, self.ctx, self.result = task, cfg, ctx, result
        self.tier = model_tier(cfg)
        # The job's seed has one home below the plan: the spec's, which build_task gives the
        # Task's context; every draw of the loop (weights, batch order, generators) reads it here.
        self.seed = int(task.ctx.seed)
        self.start = time.perf_counter()
        # Set by the hooks (setup, build_training, train): declared here so every attribute of a
        # loop is visible in one place.
        self.model: Any = None
        self.dataset_hash: Optional[str] = None
        self.train_set: Any = None
        self.val_set: Any = None
        self.steps = 0            # planned training steps
        self.step = 0             # steps done
        self.train_s = 0.0        # training seconds (logging, checkpoints, evaluations excluded)
        self.label = ""
        self.initial_weights: Optional[list[Any]] = None  # until the early check has measured the drift
        # The learning rates the optimizers applied in the last step, read from them by train_step
        # (by optimizer name, one per parameter group), and the recipe's schedule they are held to.
        self.applied_lr: dict[str, list[float]] = {}
        self.schedule: Optional[RecipeSchedule] = None

    # ------------------------------------------------------------------ hooks
    @abc.abstractmethod
    def setup(self) -> None:
        """Seeds, data preparation (sets ``dataset_hash``), the model, ``cfg.checkpoint`` weights."""

    @abc.abstractmethod
    def build_training(self) -> None:
        """Train set, optimizer and schedule; sets ``steps``, ``step`` = 0 and ``train_s`` = 0."""

    @abc.abstractmethod
    def batches(self) -> Iterator[Any]:
        """Training batches from ``step`` on, endlessly, in the seeded order."""

    @abc.abstractmethod
    def trainable_tensors(self) -> list[Any]:
        """Every trainable weight, as CPU torch tensors in a fixed order (views, not copies)."""

    @abc.abstractmethod
    def train_step(self, batch: Any) -> dict[str, float]:
        """One optimizer step; the loss values as floats (``check_finite`` already applied)."""

    @abc.abstractmethod
    def current_lr(self) -> float:
        """The learning rate of the last step, for the curve."""

    @abc.abstractmethod
    def framework_state(self) -> dict[str, Any]:
        """Model, optimizer and framework RNG state for the checkpoint (merged into ``state``)."""

    @abc.abstractmethod
    def restore(self, state: dict[str, Any]) -> None:
        """Load ``framework_state``'s part of a checkpoint; DataError when it is not this loop's."""

    @abc.abstractmethod
    def inference(self) -> AbstractContextManager:
        """The context evaluation runs in (eval mode, no gradients, autocast)."""

    @abc.abstractmethod
    def eval_batches(self, dataset: Any, batch_size: int) -> Iterator[Any]:
        """Evaluation batches of ``dataset`` in order, the last one possibly short."""

    @abc.abstractmethod
    def predict_batch(self, batch: Any) -> list[dict]:
        """The task's predictions of one batch, on the host, for the evaluator."""

    @abc.abstractmethod
    def state_snapshot(self) -> dict[str, Any]:
        """Every parameter and buffer of the model as host arrays by name (a copy)."""

    @abc.abstractmethod
    def assign_snapshot(self, snapshot: dict[str, Any]) -> None:
        """Put a ``state_snapshot`` (every array, by name, in the model's dtypes) back into the model."""

    def mode_problem(self, training: bool) -> str:
        """What is wrong with the model's mode for a training step (``training``) or an evaluated
        batch; empty when nothing is, or when the framework keeps no mode on the model."""
        return ""

    @staticmethod
    @abc.abstractmethod
    def load_state_into(model: Any, path: Path) -> None:
        """Load weights from a file in this framework's own format into ``model`` (``load_weights``
        tried the task's first); a DataError naming the file when it does not fit. Static: the
        entry check (replicate/entry_checks.py) loads a ``checkpoint=`` file before any job runs."""

    def enter_training(self) -> None:
        """Called when training (re)starts; a framework with train/eval modes switches here."""

    def load_job_weights(self) -> None:
        """The weights the job starts from or scores (``checkpoint=``, an eval tier's released
        file), checked against the hash published with it; the file and its hash are recorded."""
        weights = weights_for(self.cfg)
        if weights is None:
            return
        digest = verify(weights)
        self.result.environment["weights"] = {"path": str(weights.path), "sha256": digest,
                                               "published_prefix": weights.published_prefix, "source": weights.source}
        self.load_weights(weights.path)

    def load_weights(self, path: Path) -> None:
        """A weights file in a format the task knows (e.g. Darknet .weights), else this loop's own."""
        if not self.task.load_checkpoint(self.model, path):
            self.load_state_into(self.model, path)

    # ------------------------------------------------------------------ train
    def build_train_set(self) -> None:
        """The train set, refused when it cannot fill one batch (drop_last would yield nothing)."""
        recipe = self.tier.recipe
        self.ctx.stage = "data pipeline"
        self.train_set = self.task.build_dataset(self.tier.train_split, train=True)
        if len(self.train_set) < recipe.batch_size:
            raise DataError(str(job_data(self.cfg).root),
                            f"{len(self.train_set)} training samples < batch_size {recipe.batch_size}")

    def check_finite(self, loss: Any) -> None:
        detach = getattr(loss, "detach", None)  # a torch tensor: no autograd warning on conversion
        value = float(detach() if callable(detach) else loss)
        if not math.isfinite(value):
            raise NumericalError(f"loss is {value} at step {self.step + 1}")

    def train(self) -> None:
        recipe = self.tier.recipe
        self.ctx.stage = "training"
        early_step = math.ceil(self.ctx.early.fraction * self.steps)
        self.label = f"{self.cfg.model.name}/{self.cfg.tier.name}/s{self.seed}{self.label_suffix}"
        bar = tqdm(total=self.steps, initial=self.step, desc=self.label, file=sys.stderr, disable=not self.ctx.progress,
                   mininterval=2.0, dynamic_ncols=True)
        data = self.batches()
        self.schedule = self.recipe_schedule()
        self.initial_weights = self.load_initial_weights(early_step)
        self.enter_training()
        if self.step == early_step and self.wants_eval(early_step) and self.curve_eval(early_step):
            # resumed from the checkpoint written at the early step, before its check ran: run it now
            bar.close()
            return
        try:
            with deferred_stops() as stop:
                self._train_steps(recipe, early_step, data, bar, stop)
        finally:   # also on Ctrl-C/SIGTERM: the bar's last state is not redrawn at exit
            bar.close()

    def _train_steps(self, recipe: Any, early_step: int, data: Iterator[Any], bar: tqdm, stop: StopRequest) -> None:
        tick = time.perf_counter()
        while self.step < self.steps:
            values = self.train_step(next(data))
            self.step += 1
            bar.update(1)
            problem = self.mode_problem(training=True)
            if problem:
                raise PathInvariantBroken("training", f"training step {self.step} ran with {problem}")
            if stop.requested:   # SIGTERM/Ctrl-C during the step: keep it, then stop
                self.train_s += time.perf_counter() - tick
                ckpt.save(self.ctx.checkpoint_dir, self.state())
                self.result.steps_done, self.result.times.train_s = self.step, self.train_s
                self.ctx.stopped_by = stop.name
                raise stop.exception()
            # train_s counts training only: the clock stops for logging, checkpoints and evaluations
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

    def recipe_schedule(self) -> RecipeSchedule:
        """The recipe's schedule, computed afresh from the recipe (not taken from the loop's
        scheduler), so a loop that builds its schedule wrongly is caught by the check in ``log``."""
        recipe = self.tier.recipe
        steps, per_unit = total_steps(recipe, len(self.train_set), self.cfg.tier.schedule_fraction)
        return RecipeSchedule(scaled_lr(recipe)[0], steps, per_unit, recipe, float32=self.lr_float32)

    def log(self, values: dict[str, float], bar: tqdm) -> None:
        point = {"step": self.step, "train_s": round(self.train_s, 3), "lr": self.current_lr(), **values}
        if self.applied_lr:   # the rate the first optimizer's first group used; check_step holds every one
            point["lr_applied"] = next(iter(self.applied_lr.values()))[0]
        self.result.curve.append(point)
        if self.applied_lr and self.schedule is not None:
            check_step(self.step, self.applied_lr, self.schedule)
        bar.set_postfix(loss=f"{values['loss']:.3f}", refresh=False)
        tenth = max(1, self.steps // 10)
        if bar.disable and (self.step // tenth) != ((self.step - self.tier.recipe.log_every) // tenth):
            # No bar (a Ray worker's stderr is not a terminal): a line every 10% instead.
            print(f"{self.label}: step {self.step}/{self.steps} loss {values['loss']:.4f} ({self.train_s:.0f}s)",
                  file=sys.stderr, flush=True)
        # the heartbeat: what a dead attempt had done, so its retry can count the work it redoes
        ckpt.write_json(self.ctx.checkpoint_dir / ckpt.PROGRESS,
                        {"step": self.step, "train_s": self.train_s, "restarts": self.result.restarts,
                         "lost_s": self.result.times.lost_s, "time": time.time()})

    @property
    def checks_early(self) -> bool:
        return self.ctx.early.runs

    def load_initial_weights(self, early_step: int) -> Optional[list[Any]]:
        """The weights training started from, while the early check still needs them. Kept beside
        the checkpoint (written once, removed after the check), so a job resumed before its early
        check still measures its drift; without the file the drift is not judged."""
        if not self.checks_early or self.step >= early_step:
            return None
        path = self.ctx.checkpoint_dir / ckpt.INITIAL_WEIGHTS
        if self.step == 0:
            tensors = [t.detach().clone() for t in self.trainable_tensors()]
            ckpt.save_file(path, tensors)
            return tensors
        try:
            loaded = ckpt.load_file(path) if path.is_file() else None
        except DataError:
            return None
        return list(loaded) if isinstance(loaded, list) else None

    def early_drift(self) -> Optional[float]:
        if self.initial_weights is None:
            return None
        return weight_drift(self.trainable_tensors(), self.initial_weights)

    def wants_eval(self, early_step: int) -> bool:
        every = self.tier.recipe.eval_every
        early = self.checks_early and self.step == early_step and "step" not in self.result.early_check
        periodic = bool(every) and self.step % every == 0 and self.step < self.steps
        return early or periodic

    def curve_eval(self, early_step: int) -> bool:
        """Evaluate mid-run for the curve; at the early step, judge it. True means abort.

        The early check judges what costs nothing first, the training loss and the weights' drift
        from their start, so a job off either band stops before the evaluation is paid for (the
        metric is then not measured)."""
        at_early = self.step == early_step
        loss = early_loss(self.result.curve, early_step) if at_early else None
        drift = self.early_drift() if at_early else None
        early = self.ctx.early
        reason = early.cheap_reason(loss, drift)
        value = None
        if reason is None and not (at_early and self.ctx.stop_at_early):
            metrics = self.evaluate(self.tier.recipe.eval_batches)
            value = metrics.get(self.ctx.metric) if self.ctx.metric else None
            self.result.curve.append({"step": self.step, "train_s": round(self.train_s, 3), **metrics})
            if not at_early or value is None:
                return False
        check: dict[str, Any] = {"step": self.step, "fraction": early.fraction, "metric": value,
                                 "train_loss": loss, "weight_drift": drift, "reference": early.reference,
                                 "threshold": early.threshold, "loss_band": early.loss_band,
                                 "drift_band": early.drift_band, "aborted": False, "reason": reason,
                                 "saved_train_s": 0.0, **({"source": early.source} if early.source else {})}
        if early.metric_behind(value):
            check["reason"] = "metric"
        if check["reason"] or self.ctx.stop_at_early:
            check["aborted"] = True
            check["saved_train_s"] = self.train_s / max(1, self.step) * (self.steps - self.step)
        self.result.early_check = check
        ckpt.save(self.ctx.checkpoint_dir, self.state())
        self.initial_weights = None
        (self.ctx.checkpoint_dir / ckpt.INITIAL_WEIGHTS).unlink(missing_ok=True)
        return check["aborted"]

    # ------------------------------------------------------------- checkpoint
    def state(self) -> dict[str, Any]:
        own = self.framework_state()
        return {**own, "step": self.step, "train_s": self.train_s, "curve": self.result.curve,
                "images_seen": self.result.images_seen, "early_check": self.result.early_check,
                "restarts": self.result.restarts, "lost_s": self.result.times.lost_s,
                "rng": {**own.get("rng", {}), "numpy": ckpt.numpy_rng_state(), "python": random.getstate(),
                        "augmentation": self.augmentation_state()}}

    def start_epoch(self, epoch: int) -> None:
        """Before an epoch's data iterator starts: DataLoader workers seed from the epoch."""
        stream = augmentation_random(self.train_set)
        if stream is not None:
            stream.set_epoch(epoch)

    def augmentation_state(self) -> Optional[Any]:
        stream = augmentation_random(self.train_set)
        return stream.state() if stream is not None else None

    def resume(self) -> None:
        """Continue from the latest checkpoint; the work since it counts as time lost to restarts.

        A checkpoint that cannot be read or restored is moved aside and the job starts over
        (setup and training state built afresh, so it runs as if no checkpoint had existed);
        ``environment.discarded_checkpoint`` records where it went and why."""
        try:
            state = ckpt.load_latest(self.ctx.checkpoint_dir)
            if state is None:
                self.count_attempt_without_checkpoint()
                return
            self.restore(state)
            self.restore_loop_state(state)
        except (DataError, KeyError, TypeError, ValueError, RuntimeError) as exc:
            if is_oom(exc):
                raise   # the machine's trouble, not the file's: a good checkpoint is never discarded for it
            reason = str(exc) if isinstance(exc, DataError) else f"cannot restore it: {type(exc).__name__}: {exc}"
            self.result.environment["discarded_checkpoint"] = ckpt.discard(self.ctx.checkpoint_dir, reason[:500])
            self.setup()
            self.build_training()
            return
        heartbeat = ckpt.read_json(self.ctx.checkpoint_dir / ckpt.PROGRESS) or {}
        lost = max(0.0, heartbeat.get("train_s", self.train_s) - self.train_s)
        self.result.restarts = state["restarts"] + 1
        self.result.times.lost_s = state["lost_s"] + lost
        attempts.note_resumed(self.ctx.checkpoint_dir, self.step, self.train_s)

    def count_attempt_without_checkpoint(self) -> None:
        """An earlier attempt that died before its first checkpoint left only its heartbeat: this
        run starts from step 0, and everything that attempt trained is lost (a restart all the
        same: the store must not say ``restarts 0, lost_s 0``)."""
        heartbeat = ckpt.read_json(self.ctx.checkpoint_dir / ckpt.PROGRESS)
        if not heartbeat:
            return
        self.result.restarts = int(heartbeat.get("restarts", 0)) + 1
        self.result.times.lost_s = float(heartbeat.get("lost_s", 0.0)) + float(heartbeat.get("train_s", 0.0))

    def restore_loop_state(self, state: dict[str, Any]) -> None:
        """The loop's part of a checkpoint: progress, curve and every random stream."""
        self.step, self.train_s = state["step"], state["train_s"]
        self.result.curve, self.result.images_seen = state["curve"], state["images_seen"]
        self.result.early_check = state["early_check"]
        ckpt.set_numpy_rng_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        stream = augmentation_random(self.train_set)
        if stream is not None and state["rng"].get("augmentation") is not None:
            stream.load_state(state["rng"]["augmentation"])

    # --------------------------------------------------------------- evaluate
    def evaluate(self, max_batches: Optional[int] = None) -> dict[str, float]:
        self.ctx.stage = "evaluation"
        began = time.perf_counter()
        evaluator = self.task.build_evaluator(self.tier.eval_split)
        instrument = getattr(evaluator, "instrument", None)
        if instrument:   # a network that measures (pix2pix's FCN): which file, recorded with the result
            self.result.environment["instrument"] = instrument
        self.predict_into(evaluator, max_batches)
        metrics = {k: float(v) for k, v in evaluator.compute().items()}
        for key, value in metrics.items():
            if not math.isfinite(value):
                raise NumericalError(f"metric {key} is {value}")
        self.result.times.eval_s += time.perf_counter() - began
        return metrics

    def eval_batch_size(self) -> int:
        """The tier's ``eval_batch_size``; else its recipe's batch; else (an eval tier that sets
        neither: YOLO's, whose letterboxed images batch without padding) 8 images beside an
        accelerator and 1 on a CPU. On a CPU a batch's activations outgrow the caches: yolov4 at
        608 px took 18.3 s for 8 images as one batch and 10.6 s one at a time (2026-12-01)."""
        if self.tier.eval_batch_size:
            return int(self.tier.eval_batch_size)
        if self.tier.recipe:
            return int(self.tier.recipe.batch_size)
        return 1 if self.cfg.hardware.accelerator == "cpu" else 8

    def evaluation_set(self) -> Any:
        """The tier's evaluation split as the task builds it, built once."""
        if self.val_set is None:
            self.val_set = self.task.build_dataset(self.tier.eval_split, train=False)
        return self.val_set

    def predict_into(self, evaluator: Any, max_batches: Optional[int] = None,
                     batch_size: Optional[int] = None) -> int:
        """The evaluation path up to the scoring: each batch of the evaluation split loaded,
        predicted and handed to ``evaluator.update`` (COCO encoding for the detectors). What
        benchmarks/eval_throughput.py times against each reference's own loop. Returns the
        number of images."""
        images = 0
        with self.inference():
            # islice: stop before loading a batch past max_batches, not after
            batches = self.eval_batches(self.evaluation_set(), batch_size or self.eval_batch_size())
            for batch in itertools.islice(batches, max_batches):
                problem = self.mode_problem(training=False)
                if problem:
                    raise PathInvariantBroken("evaluation", f"evaluating with {problem}")
                evaluator.update(self.predict_batch(batch))
                images += self.task.batch_size_of(batch)
        return images

    def check_evaluation_path(self) -> None:
        """The evaluation invariants (replicate/runner/path_invariants.py) on this loop's own path,
        with every random stream put back afterwards: the job then trains exactly as unchecked."""
        self.ctx.stage = "evaluation"
        with preserved_random_streams():
            self.result.environment["evaluation_path"] = check_evaluation_path(self)

    def check_evaluation_reference(self) -> None:
        """The tier's calibrated evaluation weights scored through this loop's evaluation, once per
        attempt before training (replicate/runner/evaluation_reference.py); the model and every
        random stream are put back afterwards."""
        self.ctx.stage = "evaluation"
        self.result.environment["evaluation_reference"] = check_evaluation_reference(self)

    # -------------------------------------------------------------------- run
    def run(self) -> JobResult:
        self.setup()
        # the data is in place now: an evaluation split that holds the training images fails here,
        # before any training is paid for
        check_no_leak(job_data(self.cfg), self.tier.eval_split, self.tier.train_split)
        if self.cfg.tier.trains:
            self.build_training()
            self.resume()
            self.check_evaluation_path()
            self.check_evaluation_reference()
            self.result.times.setup_s = time.perf_counter() - self.start
            self.train()
            self.result.steps_done = self.step
            self.result.times.train_s = self.train_s
            if self.train_s > 0:
                self.result.throughput = self.result.images_seen / self.train_s
        else:
            self.check_evaluation_path()
            self.check_evaluation_reference()
            self.result.times.setup_s = time.perf_counter() - self.start
        self.result.environment["dataset_hash"] = self.dataset_hash
        if self.result.early_check.get("aborted"):
            # the early evaluation's metrics; none when the loss stopped the job before it evaluated
            evaluated = self.result.early_check.get("metric") is not None
            self.result.metrics = ({k: v for k, v in self.result.curve[-1].items() if k not in ("step", "train_s")}
                                   if evaluated else {})
        else:
            checked = self.result.environment.get("evaluation_path", {})
            if self.cfg.tier.trains and not checked.get("values_compared", 1):
                self.check_evaluation_path()   # nothing was predicted at the start: again, trained
            self.result.metrics = self.evaluate(self.tier.recipe.eval_batches if self.tier.recipe else None)
            if self.cfg.tier.trains:
                self.result.curve.append({"step": self.step, "train_s": round(self.train_s, 3), **self.result.metrics})
        return self.result
