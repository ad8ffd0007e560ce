"""Pre-flight check of a model without training it: the defects that are cheap to catch early.

Config valid; the evaluation split shares no images with the training split; the full variant
builds with the config's trainable parameter count; outputs pass through; every input a network
is declared to read moves its output; an image's predictions
do not depend on the images batched with it; gradients reach every trainable parameter; one
batch can be overfit, and training updates the normalisation layers' running statistics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from replicate.config.compose import compose_config
from replicate.config.overrides import Overrides
from replicate.config.schema import Optimizer
from replicate.config.selection import job_data, model_tier
from replicate.entry_checks import check_input_size
from replicate.resolved import resolve_job
from replicate.runner.norm_statistics import running_statistics, statistics_moved

# the batch-invariance rule's one home: every job applies it on its own path too
from replicate.runner.path_invariants import ATOL as BATCH_INVARIANCE_ATOL
from replicate.runner.path_invariants import TOP_SCORES as BATCH_INVARIANCE_TOP
from replicate.runner.torch_loop import seed_everything
from replicate.runner.worker import build_task
from replicate.visual import write_sample_grid
from replicate.weights_file import weights_for

OVERFIT_STEPS = 40
OVERFIT_DROP = 0.5   # the loss on one repeated batch must fall below half its first value


@dataclass
class CheckReport:
    model: str
    checks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c["ok"] for c in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append({"check": name, "ok": bool(ok), "detail": detail})


def run_check(overrides: Sequence[str], echo: Callable[[str], None] = print, visual: bool = False) -> CheckReport:
    """Run every check; a failing check is reported, not raised, so all of them are seen."""
    parsed = Overrides.parse(overrides)
    if not parsed.has("tier"):
        parsed = parsed.plus("tier=smoke")
    if not parsed.has("tier.compare_with"):
        parsed = parsed.plus("tier.compare_with=none")  # nothing is trained: no reference needed
    cfg = compose_config(parsed)
    report = CheckReport(cfg.model.name)
    report.add("config", True,
               f"{cfg.model.name}: valid ({len(cfg.model.claims)} claims, tiers {', '.join(cfg.model.tiers)})")
    job = resolve_job(cfg, None)
    spec = job.spec
    check_input_size(cfg, spec.framework, spec.variant)   # before a model is built at that size
    from replicate.runner.numeric_threads import apply_job_threads

    apply_job_threads(job.threads)   # the thread pools the job will run on
    task = build_task(spec, cfg)   # the registered implementation of the job's framework
    framework = spec.framework
    _check_param_count(task, cfg, report)
    seed_everything(int(cfg.seed))
    PREFLIGHTS[framework].seed(int(cfg.seed))
    task.prepare_data()
    _check_splits(cfg, report)
    model = task.build_model(spec.variant)
    dataset = task.build_dataset(model_tier(cfg).train_split, train=False)
    batch = task.collate([dataset[i] for i in range(min(2, len(dataset)))])
    weights = weights_for(cfg)   # checkpoint=, or an eval tier's released file
    if weights is not None:
        _check_checkpoint(task, model, weights.path, framework, report)
    PREFLIGHTS[framework].run(task, model, dataset, batch, cfg, report)
    _check_evaluation_reference(spec, cfg, job.threads, report)
    differential = task.differential_check()  # torch vs TensorFlow, for two-framework models
    if differential is not None:
        report.add("differential", *differential)
    if visual:
        path = write_sample_grid(task, task.build_dataset(model_tier(cfg).train_split, train=True),
                                 Path(cfg.results_dir) / "check" / f"{cfg.model.name}_samples.png")
        report.add("visual", path.is_file(), f"training samples drawn to {path}")
    for item in report.checks:
        echo(f"{'ok  ' if item['ok'] else 'FAIL'} {item['check']:<12} {item['detail']}")
    return report


def _check_evaluation_reference(spec: Any, cfg: Any, threads: int, report: CheckReport) -> None:
    """The smoke tier's calibrated evaluation weights, scored through the job's own loop and
    evaluation, as every smoke job does before it trains (replicate/runner/evaluation_reference.py)."""
    import tempfile

    from replicate.errors import DataError, EvaluationPathChanged
    from replicate.jobs import JobResult
    from replicate.runner.base_loop import RunContext
    from replicate.runner.evaluation_reference import judge, reference_for
    from replicate.runner.worker import build_loop

    recorded = reference_for(cfg)
    if recorded is None:
        return   # an eval or full tier: its metric is judged against the paper, not fixed weights
    with tempfile.TemporaryDirectory(prefix="zoo-check-") as scratch:
        ctx = RunContext(checkpoint_dir=Path(scratch), progress=False, threads=threads)
        loop = build_loop(spec, cfg, ctx, JobResult(spec.job_id))
        try:
            loop.setup()   # a bad checkpoint= file fails here too (the checkpoint check names it)
            judged = judge(loop, recorded)
        except (EvaluationPathChanged, DataError) as exc:
            report.add("evaluation", False, str(exc))
            return
    if not judged["judged"]:
        report.add("evaluation", True, f"not judged: {judged['why']}")
        return
    metric = next(iter(judged["recorded"]))
    report.add("evaluation", True, f"the calibrated evaluation weights score {metric} {judged['measured'][metric]:.6g} "
                                   f"on {judged['images']} images, as recorded")


def _check_checkpoint(task: Any, model: Any, path: Path, framework: str, report: CheckReport) -> None:
    """``checkpoint=``: the file loads into this model (a format the task knows, else the loop's)."""
    from replicate.errors import DataError
    from replicate.runner.worker import loop_class

    try:
        if not task.load_checkpoint(model, path):
            loop_class(framework).load_state_into(model, path)
    except DataError as exc:
        report.add("checkpoint", False, str(exc)[:300])
        return
    report.add("checkpoint", True, f"{path}: loaded into the model")


def _check_splits(cfg: Any, report: CheckReport) -> None:
    """The evaluation split holds no training images (by content: replicate/data/leakage.py)."""
    from replicate.data.leakage import check_no_leak
    from replicate.errors import SplitLeak

    tier = model_tier(cfg)
    try:
        overlap = check_no_leak(job_data(cfg), tier.eval_split, tier.train_split)
    except SplitLeak as exc:
        report.add("splits", False, str(exc))
        return
    root = job_data(cfg).root
    detail = (f"evaluation split {tier.eval_split!r}: {overlap.shared} of {overlap.eval_files} files also in "
              f"training split {tier.train_split!r}" if overlap is not None else
              f"not compared: the manifest of {root} lists no file of split {tier.eval_split!r}")
    report.add("splits", True, detail)


def _check_param_count(task: Any, cfg: Any, report: CheckReport) -> None:
    full = cfg.model.variants.full
    model = task.build_model("full")
    count = task.trainable_parameters(model)
    report.add("params", count == full.trainable_params,
               f"full variant: {count:,} trainable, config says {full.trainable_params:,} ({full.params_source})")


def _check_shapes(task: Any, model: Any, batch: Any, report: CheckReport) -> None:
    model.eval()
    with torch.no_grad():
        shapes = task.output_shapes(model, batch)
    ok = bool(shapes) and all(len(s) > 0 for s in shapes.values())
    report.add("shapes", ok, ", ".join(f"{k}{list(v)}" for k, v in shapes.items()) or "no outputs")


# How far an image's detection scores may move when other images share its batch: float noise of
# a different kernel path for another batch size (measured: 1e-8 to 0 on the seven models), far
# below what batch statistics do to them (2e-3 for yolov3's untrained scores, which sit near
# its 0.01 objectness prior).


def _check_batch_invariance(task: Any, model: Any, dataset: Any, report: CheckReport) -> None:
    """Inference is per image: an image's predictions must not depend on the images batched with
    it. Batch norm left in training mode, dropout left on or a statistic over the batch in the
    post-processing make them depend on it, and the metric then moves with the batch size."""
    if len(dataset) < 2:
        return
    items = [dataset[i] for i in range(2)]
    model.eval()
    with torch.no_grad():
        together = task.predict(model, task.collate(items))
        alone = task.predict(model, task.collate(items[:1]))
    if len(together) != 2 or len(alone) != 1:
        report.add("batch", True, "not compared: predictions come per batch, not per image")
        return
    scores = [p.get("scores") for p in (together[0], alone[0])]
    if not all(isinstance(s, torch.Tensor) for s in scores):
        report.add("batch", True, "not compared: the predictions carry no scores")
        return
    # sorted, so that detections of equal score swapping places (float noise) change nothing
    best = [torch.sort(s.float().flatten(), descending=True).values[:BATCH_INVARIANCE_TOP] for s in scores]
    k = min(len(best[0]), len(best[1]))
    change = float((best[0][:k] - best[1][:k]).abs().max()) if k else 0.0
    ok = change <= BATCH_INVARIANCE_ATOL and (k > 0 or len(best[0]) == len(best[1]))
    report.add("batch", ok, f"image 0 alone vs batched with image 1: its best {k} scores moved by up to {change:.2g}"
               + ("" if ok else f" (allowed {BATCH_INVARIANCE_ATOL:g}): inference depends on the batch (batch norm "
                                "in training mode? dropout on?)"))


# A perfect model's decoded box and its ground truth: equal up to float rounding and the
# encoding's clipping to the output map; half an output cell off (IoU ~0.7-0.85) is not.
ROUND_TRIP_IOU = 0.95
ROUND_TRIP_SHARE = 0.9   # of the ground-truth boxes: two centres in one cell keep one peak


class _Replay:
    """The model with its forward replaced by a recorded output; every other attribute (heads,
    train/eval) is the model's, so ``predict`` decodes exactly as it does for the real one."""

    def __init__(self, model: Any, output: Any):
        self._model, self._output = model, output

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._output

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def _check_target_round_trip(task: Any, model: Any, dataset: Any, report: CheckReport) -> None:
    """Decode the output a perfect model would give (``Task.perfect_output``) and compare it
    with the ground truth: the targets the loss trains toward must decode to the boxes."""
    from torchvision.ops import box_iou

    batch = task.collate([dataset[i] for i in range(min(4, len(dataset)))])
    perfect = task.perfect_output(model, batch)
    if perfect is None:
        return
    output, truths = perfect
    model.eval()
    with torch.no_grad():   # through predict, as the evaluation decodes: its wrappers and all
        found_all = task.predict(_Replay(model, output), batch)
    matched = total = 0
    for boxes, found in zip(truths, found_all):
        total += len(boxes)
        if len(boxes) and len(found["boxes"]):
            matched += int((box_iou(boxes, found["boxes"].float()).max(dim=1).values >= ROUND_TRIP_IOU).sum())
    ok = total > 0 and matched >= ROUND_TRIP_SHARE * total
    report.add("targets", ok, f"a perfect model's output decodes to {matched}/{total} ground-truth boxes at IoU >= "
               f"{ROUND_TRIP_IOU}" + ("" if ok else f" (needs {ROUND_TRIP_SHARE:.0%}): the targets and the decoding "
                                                  "disagree"))


def _check_gradients(task: Any, model: Any, batch: Any, report: CheckReport) -> None:
    model.train()
    model.zero_grad(set_to_none=True)
    task.check_loss(model, batch).backward()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in named if p.grad is None or not torch.isfinite(p.grad).all()]
    detail = f"{len(named) - len(missing)}/{len(named)} trainable tensors get finite gradients"
    if missing:
        detail += f"; none reach: {', '.join(missing[:5])}"
    report.add("gradients", not missing, detail)
    model.zero_grad(set_to_none=True)


def _check_overfit(task: Any, model: Any, batch: Any, cfg: Any, report: CheckReport) -> None:
    recipe = model_tier(cfg).recipe
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-3) if recipe is None or recipe.optimizer != Optimizer.SGD else \
        torch.optim.SGD(params, lr=float(recipe.lr), momentum=0.9)
    model.train()
    statistics = running_statistics(model)
    before = [t.clone() for _, t in statistics]
    began, losses = time.perf_counter(), []
    for _ in range(OVERFIT_STEPS):
        optimizer.zero_grad(set_to_none=True)
        loss = task.check_loss(model, batch)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    first, last = losses[0], min(losses[-5:])
    report.add("overfit", last < OVERFIT_DROP * first,
               f"one batch, {OVERFIT_STEPS} steps: loss {first:.3f} -> {last:.3f} "
               f"(needs < {OVERFIT_DROP:.0%} of the first; {time.perf_counter() - began:.1f}s)")
    report.add("statistics", *statistics_moved([n for n, _ in statistics],
                                               [bool(torch.equal(b, t)) for b, (_, t) in zip(before, statistics)]))


def _check_inputs_read(task: Any, model: Any, dataset: Any, report: CheckReport) -> None:
    """Every input a network is declared to read moves its output (``Task.ignored_inputs``); the
    line is left out for a model that declares none."""
    ignored = task.ignored_inputs(model, dataset)
    if ignored is not None:
        report.add("inputs", not ignored, "; ".join(ignored) or "every declared input moves its network's output")


def _torch_preflight(task: Any, model: Any, dataset: Any, batch: Any, cfg: Any, report: CheckReport) -> None:
    _check_shapes(task, model, batch, report)
    _check_inputs_read(task, model, dataset, report)
    _check_batch_invariance(task, model, dataset, report)
    _check_target_round_trip(task, model, dataset, report)
    _check_gradients(task, model, batch, report)
    _check_overfit(task, model, batch, cfg, report)


def _tf_preflight(task: Any, model: Any, dataset: Any, batch: Any, cfg: Any, report: CheckReport) -> None:
    from replicate.runner.tf_loop import tf_preflight

    for name, ok, detail in tf_preflight(task, model, batch, model_tier(cfg).recipe,
                                         OVERFIT_STEPS, OVERFIT_DROP):
        report.add(name, ok, detail)


def _tf_seed(seed: int) -> None:
    """seed_everything seeds torch, numpy and random; TF ops draw from TF's own seed."""
    from replicate.tf_import import tensorflow

    tensorflow().keras.utils.set_random_seed(seed)


@dataclass(frozen=True)
class Preflight:
    """A framework's part of the pre-flight: its extra seeding and the checks of its steps."""

    seed: Callable[[int], None]
    run: Callable[[Any, Any, Any, Any, Any, CheckReport], None]


# One row per framework (the runner's loops are keyed the same way: runner/worker.py LOOPS).
PREFLIGHTS = {"torch": Preflight(lambda seed: None, _torch_preflight),
              "tensorflow": Preflight(_tf_seed, _tf_preflight)}

