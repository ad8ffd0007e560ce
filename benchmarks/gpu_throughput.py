"""GPU throughput per model, through the harness's own training step and evaluation path.

On a machine with NVIDIA GPUs, per model (the full variant at its full tier's input size, or its
eval tier's where it has no full tier; the recipe's batch per GPU capped by ``--max-batch``):
training images/s in fp32 and in amp (fp16 autocast and a GradScaler on CUDA; every tier's default
is fp32, its reference's), evaluation images/s in amp (data, forward, post-processing, COCO
encoding: ``BaseLoop.predict_into``), peak GPU memory, and for the Darknet models the model FLOPs
utilisation of a training step (3 x darknet's forward FLOPs per image,
models/zoo_models/darknet/flops.py, over the GPU's peak). Inputs are the synthetic shapes data at
that size (no COCO on the machine); throughput does not depend on what the pixels show. Published
inference speeds are printed beside ours where the papers give them (other GPUs, batch 1: a
context, not a target).

``--dry-run`` (any CPU, seconds): the small variants at the smoke size, two steps each, so the
script cannot rot; the JSON has the same shape. Writes ``--out`` (default
results/benchmarks/gpu.json).

    python -m benchmarks.gpu_throughput [--dry-run] [--models yolov3,yolov4] [--steps 20] [--time-limit 480]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

from benchmarks.ratio import Ratio, machine

# Dense peak of the tensor cores by data type, TFLOPS (NVIDIA datasheets: H100 SXM5 and H200
# share the GH100 figures; A100 SXM4; V100 SXM2). fp32 means TF32 tensor cores where there are any.
PEAK_TFLOPS = {
    "H100": {"fp16": 989.0, "fp32": 494.0}, "H200": {"fp16": 989.0, "fp32": 494.0},
    "A100": {"fp16": 312.0, "fp32": 156.0}, "V100": {"fp16": 125.0, "fp32": 15.7},
}
# Inference speeds the papers publish (their GPU, batch 1, their input size).
PUBLISHED = {
    "yolov3": "YOLOv3 paper (arXiv:1804.02767), Figure 1: YOLOv3-608 in 51 ms on a Titan X",
    "yolov4": "YOLOv4 paper (arXiv:2004.10934): 608x608 at 62 FPS on a Tesla V100",
    "centernet": "CenterNet paper (arXiv:1904.07850), abstract: ResDCN-18 28.1% AP at 142 FPS (Titan Xp)",
}
DARKNET_MODELS = ("yolov3", "yolov4")
DEFAULT_MODELS = ("faster_rcnn", "mask_rcnn", "retinanet", "centernet", "pix2pix", "yolov3", "yolov4")


def _loop(model: str, dry_run: bool, results_dir: str, max_batch: int) -> Any:
    from replicate.config.compose import compose_config
    from replicate.jobs import JobResult
    from replicate.resolved import make_spec
    from replicate.runner.base_loop import RunContext
    from replicate.runner.torch_loop import TorchLoop
    from replicate.runner.worker import build_task

    probe = compose_config([f"model={model}"])
    # the tier that reproduces the paper: full (trains), else eval (released weights: no recipe)
    real = next(probe.model.tiers[t] for t in ("full", "eval", "smoke") if t in probe.model.tiers)
    size = int(probe.model.tiers.smoke.input_size if dry_run else real.input_size)
    recipe_batch = int(real.recipe.batch_size) if real.get("recipe") else max_batch
    batch = 2 if dry_run else min(max_batch, recipe_batch)
    overrides = [f"model={model}", "tier.compare_with=none", f"results_dir={results_dir}", "logger=none",
                 f"model.tiers.smoke.recipe.batch_size={batch}", "model.tiers.smoke.recipe.steps=1000",
                 "datasets.shapes.num_train=64", "datasets.shapes.num_val=32"]
    if not dry_run:
        overrides += ["model.tiers.smoke.variant=full", f"model.tiers.smoke.input_size={size}",
                      f"datasets.shapes.image_size={size}"]
    cfg = compose_config(overrides)
    spec = make_spec(cfg, None)
    ctx = RunContext(checkpoint_dir=Path(results_dir) / "checkpoints", progress=False)
    loop = TorchLoop(build_task(spec, cfg), cfg, ctx, JobResult(spec.job_id))
    loop.setup()
    loop.build_training()
    return loop, size, batch


def use_precision(loop: Any, amp: bool) -> None:
    """Switch a built loop between fp32 and amp (fp16 autocast and a GradScaler, on CUDA only), as
    TorchLoop decides it from the job's precision: one loop, both measured."""
    from replicate.runner.mixed_precision import MixedPrecision

    loop.fp16 = amp and loop.device.type == "cuda"
    loop.mixed = MixedPrecision.for_device(loop.fp16, loop.device.type)


def _train_rate(loop: Any, steps: int, warmup: int, amp: bool) -> tuple[float, Optional[int]]:
    """Images per second of the harness's train step, and the peak GPU memory (None on a CPU)."""
    import torch

    use_precision(loop, amp)
    cuda = loop.device.type == "cuda"
    data = loop.batches()
    loop.enter_training()
    for _ in range(warmup):
        loop.train_step(next(data))
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    seen, began = loop.result.images_seen, time.perf_counter()
    for _ in range(steps):
        loop.train_step(next(data))
    if cuda:
        torch.cuda.synchronize()
    rate = (loop.result.images_seen - seen) / (time.perf_counter() - began)
    return rate, int(torch.cuda.max_memory_allocated()) if cuda else None


def _eval_rate(loop: Any, batches: int) -> float:
    """Images/s of the evaluation path up to the COCO results (``predict_into``); the scoring
    after it is the coco benchmark's."""
    evaluator = loop.task.build_evaluator(loop.tier.eval_split)   # reads the ground truth: not timed
    began = time.perf_counter()
    images = loop.predict_into(evaluator, batches)
    return images / (time.perf_counter() - began)


def _gpu_peak(precision: str) -> Optional[float]:
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    found = next((peaks for key, peaks in PEAK_TFLOPS.items() if key in name), None)
    return found[precision] * 1e12 if found else None


def measure_model(model: str, dry_run: bool, steps: int, max_batch: int) -> dict[str, Any]:
    from zoo_models.darknet.cfg_parser import find_cfg
    from zoo_models.darknet.flops import forward_flops, graph_at_size

    with tempfile.TemporaryDirectory(prefix="zoo-gpu-") as tmp:
        loop, size, batch = _loop(model, dry_run, tmp, max_batch)
        warmup = 1 if dry_run else 5
        fp32, memory_fp32 = _train_rate(loop, steps, warmup, amp=False)
        mixed, memory_mixed = _train_rate(loop, steps, warmup, amp=True)
        evaluated = _eval_rate(loop, 1 if dry_run else 10)
    row: dict[str, Any] = {"model": model, "device": str(loop.device), "variant": loop.task.ctx.variant,
                           "input_size": size, "batch": batch, "steps": steps,
                           "train_images_per_s_fp32": fp32, "train_images_per_s_amp": mixed,
                           "eval_images_per_s": evaluated, "peak_memory_bytes_fp32": memory_fp32,
                           "peak_memory_bytes_amp": memory_mixed, "published": PUBLISHED.get(model)}
    if model in DARKNET_MODELS:
        cfg_name = loop.cfg.model.variants[loop.task.ctx.variant].arch.cfg
        flops = forward_flops(graph_at_size(find_cfg(cfg_name), size, size))
        row["forward_gflops_per_image"] = flops / 1e9
        for precision, rate in (("fp32", fp32), ("fp16", mixed)):
            peak = _gpu_peak(precision)
            row[f"mfu_{precision}"] = 3 * flops * rate / peak if peak else None   # forward + backward ~ 3x
    return row


def measure(dry_run: bool = False, models: tuple[str, ...] = DEFAULT_MODELS, steps: Optional[int] = None,
            max_batch: int = 16, time_limit: float = 480.0, out: str = "results/benchmarks/gpu.json",
            echo: Callable[[str], None] = print) -> list[Ratio]:
    """Measure every model within ``time_limit`` seconds, write the JSON; one Ratio per model
    saying the script produced its figures (throughput has no target until a GPU baseline exists)."""
    steps = steps or (2 if dry_run else 20)
    began, rows = time.perf_counter(), []
    for model in models:
        if time.perf_counter() - began > time_limit:
            rows.append({"model": model, "skipped": f"time limit {time_limit:.0f}s reached"})
            continue
        try:
            rows.append(measure_model(model, dry_run, steps, max_batch))
        except Exception as exc:  # noqa: BLE001 - one model's failure is a row, the others still run
            rows.append({"model": model, "error": f"{type(exc).__name__}: {exc}"[:300]})
        echo(f"  gpu{' (dry run)' if dry_run else ''}: {rows[-1]}")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), "dry_run": dry_run, "models": rows}, indent=1))
    return [Ratio("gpu", f"{row['model']}: figures measured{' (dry run)' if dry_run else ''}",
                  float("train_images_per_s_amp" in row), 1.0, "higher", "",
                  row.get("error") or row.get("skipped") or f"written to {path}") for row in rows]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="small variants on any CPU: the script runs")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--time-limit", type=float, default=480.0, help="seconds; later models are skipped")
    parser.add_argument("--out", default="results/benchmarks/gpu.json")
    args = parser.parse_args(argv)
    ratios = measure(args.dry_run, tuple(m.strip() for m in args.models.split(",") if m.strip()), args.steps,
                     args.max_batch, args.time_limit, args.out)
    return 0 if all(r.ok for r in ratios) else 1


if __name__ == "__main__":
    sys.exit(main())
