"""Data-parallel scaling: one job's training throughput on N Ray Train workers against 1 process,
at the same global batch (replicate/runner/data_parallel.py).

On CPU (default): yolov4's smoke job, 2 gloo workers of one thread each vs one process of one
thread. Target >= 1.5x on 2 cores (75% scaling: gloo's gradient exchange each step is not free).

On GPUs (``--gpus N``, a machine with N NVIDIA GPUs and this project installed): the model's full
variant at its paper's input size on synthetic shapes data (throughput does not depend on what
the pixels show), N NCCL workers of one GPU each vs one GPU, each run at global batch
``--batch`` (one GPU holds all of it: choose one it fits). Target >= 0.8 x N (80% scaling: our
own bar for DDP on one host, not a published figure). The ratio is rank 0's images/s, which
counts the whole global batch.

    python -m benchmarks.data_parallel [--steps 60]                      # CPU, 2 workers
    python -m benchmarks.data_parallel --gpus 8 [--model yolov4] [--batch 64] [--steps 50]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable, Optional

from benchmarks.ratio import Ratio, print_report

CPU_TARGET = 1.5
GPU_EFFICIENCY = 0.8
MODEL = "yolov4"


def _job(results: Path, steps: int, model: str, extra: list[str]) -> object:
    from replicate.config.compose import compose_config
    from replicate.resolved import resolve_job

    recipe = "model.tiers.smoke.recipe"
    cfg = compose_config([f"model={model}", f"results_dir={results}", "tier.compare_with=none", "logger=none",
                          f"{recipe}.steps={steps}", f"{recipe}.checkpoint_every={steps}", f"{recipe}.eval_batches=1",
                          *extra])
    return resolve_job(cfg, None)


def gpu_overrides(model: str, batch: int) -> list[str]:
    """The full variant at the input size of the tier that reproduces the paper, on a GPU profile,
    at global batch ``batch``; enough synthetic images for a few steps of it."""
    from replicate.config.compose import compose_config

    probe = compose_config([f"model={model}"])
    real = next(probe.model.tiers[t] for t in ("full", "eval", "smoke") if t in probe.model.tiers)
    size = int(real.input_size)
    return ["hardware=h100x1", "model.tiers.smoke.variant=full", f"model.tiers.smoke.input_size={size}",
            f"datasets.shapes.image_size={size}", f"model.tiers.smoke.recipe.batch_size={batch}",
            f"datasets.shapes.num_train={max(64, 2 * batch)}", "datasets.shapes.num_val=16"]


def measure(steps: int = 60, echo: Callable[[str], None] = print, *, workers: int = 2, gpus: bool = False,
            model: str = MODEL, batch: int = 64) -> list[Ratio]:
    """Train the same job in one process and on ``workers`` Ray Train workers; the throughput ratio."""
    import ray
    import torch

    from replicate.data.prepare import prepare_dataset
    from replicate.runner.data_parallel import run_data_parallel
    from replicate.runner.worker import run_job

    if gpus and torch.cuda.device_count() < workers:
        raise SystemExit(f"--gpus {workers}: torch sees {torch.cuda.device_count()} GPU(s) on this machine")
    extra = gpu_overrides(model, batch) if gpus else []
    work = Path(tempfile.mkdtemp(prefix="zoo-dp-"))
    try:
        single = _job(work / "one", steps, model, extra)
        prepare_dataset(single.cfg.datasets.shapes)   # generated before either run is timed
        with contextlib.redirect_stderr(io.StringIO()):
            one = run_job(single, progress=False)
            if not ray.is_initialized():
                ray.init(num_cpus=max(2, workers), num_gpus=workers if gpus else 0, include_dashboard=False,
                         logging_level="ERROR")
            group = _job(work / "many", steps, model, extra)
            shutil.copytree(work / "one" / "data", work / "many" / "data")
            many = run_data_parallel(group, workers, use_gpu=gpus)
        label = f"{workers} {'NCCL GPU' if gpus else 'gloo'} workers"
        for name, result in (("1 process", one), (label, many)):
            if result.failure is not None or not result.throughput:
                raise RuntimeError(f"{name}: {result.failure.message if result.failure else 'no throughput'}")
        echo(f"  data parallel ({model}, {steps} steps): {one.throughput:.1f} images/s in one process, "
             f"{many.throughput:.1f} on {label}")
        target = GPU_EFFICIENCY * workers if gpus else CPU_TARGET
        where = f"{model} full at {extra[2].split('=')[1]}, global batch {batch}" if gpus else f"{model} smoke"
        return [Ratio("dp", f"training images/s, {label} / 1 {'GPU' if gpus else 'process'} ({where}, "
                            "same global batch)", many.throughput / one.throughput, target, "higher", "x",
                      f"{many.throughput:.1f} vs {one.throughput:.1f} images/s, {steps} steps")]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="training steps per run (CPU 60, GPUs 50)")
    parser.add_argument("--gpus", type=int, default=None, help="N GPUs vs 1 (NCCL); default: 2 CPU workers (gloo)")
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--batch", type=int, default=64, help="global batch of the GPU runs")
    args = parser.parse_args(argv)
    if args.gpus is not None and args.gpus < 2:
        parser.error("--gpus: at least 2 (N GPUs against 1)")
    if args.gpus:
        return print_report(measure(args.steps or 50, workers=args.gpus, gpus=True, model=args.model,
                                    batch=args.batch))
    return print_report(measure(args.steps or 60))


if __name__ == "__main__":
    sys.exit(main())
