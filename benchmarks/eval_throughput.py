"""Eval-tier throughput: images/s of each detector's evaluation path through the harness against
a bare loop of its reference implementation's own evaluation, same model, weights and settings.

The harness side is ``BaseLoop.predict_into``, the code an eval-tier job runs: its dataset (file
checks, targets), the DataLoader, the task's predict and the evaluator's update (COCO encoding,
image and label checks). The bare side restates each reference's test loop in its plainest form
(benchmarks/reference_eval_loops.py). Both stop once the COCO results are in memory: scoring them
is the ``coco`` benchmark's. Target (issue 14): at least 1.0x.

Same settings on both sides: the model object and its weights, the tier's input size, the job's
thread count. The loading and the batch are each side's own: the references' DataLoader workers
as their scripts set them (benchmarks/reference_eval_loops.py), the harness's as it runs on the
device (a prefetch thread on a CPU); the references test one image at a time, the harness batches
where the reference allows it (the letterboxed YOLO inputs beside a GPU).
Random weights score below torchvision's 0.05 box threshold, so both sides run with threshold 0:
each image then yields the 100 detections (and masks) a trained model gives on COCO.

The data is a COCO-layout val split at COCO's image sizes (tests/coco_layout.py). Each
measurement runs in a fresh process, in alternating order; the figure is the ratio of each side's
fastest run (benchmarks/isolated.py). ``--inject-overhead F`` makes each harness batch busy-wait
F of its own time: the sensitivity check.

    python -m benchmarks.eval_throughput [--model all|faster_rcnn,...] [--images 8] [--repeats 4]
        [--input-size 320] [--inject-overhead F]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from benchmarks.isolated import in_fresh_process
from benchmarks.ratio import Ratio

TARGET = 1.0
MODELS = ("faster_rcnn", "mask_rcnn", "retinanet", "centernet", "yolov3", "yolov4")
# the tiers whose input size may be lowered for a CPU; YOLO's is the val2017 claim's resolution
# (the config refuses another) and CenterNet tests each image at its own size
RESIZABLE = ("faster_rcnn", "mask_rcnn", "retinanet")
COCO_SIZES = [(640, 480), (480, 640), (640, 427), (500, 375)]   # (width, height), as val2017's commonest


def configure(model: str, data_root: str, results_dir: str, input_size: int) -> Any:
    """The model's eval tier on the COCO layout under ``data_root``, its released file replaced
    by the builder's random weights (no released file on this machine)."""
    from replicate.config.compose import compose_config

    os.environ["ZOO_DATA_ROOT"] = data_root   # the dataset config reads the root from it
    size = [f"model.tiers.eval.input_size={input_size}"] if model in RESIZABLE else []
    return compose_config([f"model={model}", "tier=eval", "hardware=cpu", "scheduler=inline", "logger=none",
                           f"results_dir={results_dir}", "model.tiers.eval.released=null", *size])


def build_loop(cfg: Any) -> Any:
    """The harness's loop for the job, set up (data checked, model built) as a job sets it up."""
    from replicate.jobs import JobResult
    from replicate.resolved import make_spec
    from replicate.runner.base_loop import RunContext
    from replicate.runner.torch_loop import TorchLoop
    from replicate.runner.worker import build_task

    spec = make_spec(cfg, None)
    ctx = RunContext(checkpoint_dir=Path(cfg.results_dir) / "checkpoints", progress=False)
    loop = TorchLoop(build_task(spec, cfg), cfg, ctx, JobResult(spec.job_id))
    loop.setup()
    return loop


def keep_every_detection(model: Any) -> None:
    """Score threshold 0 for torchvision's detectors (see the module docstring); the others have
    none above their reference's (CenterNet keeps its top 100, darknet's 0.005 is kept)."""
    if hasattr(model, "roi_heads"):
        model.roi_heads.score_thresh = 0.0
    elif hasattr(model, "score_thresh"):   # RetinaNet
        model.score_thresh = 0.0


def inject_overhead(loop: Any, fraction: float) -> None:
    """Each harness batch busy-waits ``fraction`` of its own time."""
    predict = loop.predict_batch

    def slowed(batch: Any) -> list[dict]:
        began = time.perf_counter()
        out = predict(batch)
        until = time.perf_counter() + fraction * (time.perf_counter() - began)
        while time.perf_counter() < until:
            pass
        return out

    loop.predict_batch = slowed


def images_per_second(kind: str, model: str, data_root: str, results_dir: str, input_size: int,
                      inject: float = 0.0) -> float:
    """One measurement (run in a fresh process): images/s of ``kind`` (harness or bare_loop)."""
    import torch

    from benchmarks.reference_eval_loops import reference_loop
    from replicate.runner.worker import set_determinism
    from replicate.scheduling.resources import job_threads

    cfg = configure(model, data_root, results_dir, input_size)
    torch.set_num_threads(job_threads(cfg))
    set_determinism(bool(cfg.tier.get("deterministic")))
    loop = build_loop(cfg)
    keep_every_detection(loop.model)
    if kind == "harness":
        if inject:
            inject_overhead(loop, inject)
        evaluator = loop.task.build_evaluator(loop.tier.eval_split)   # loads the ground truth: not timed
        began = time.perf_counter()
        images = loop.predict_into(evaluator)
    else:
        run = reference_loop(cfg, loop)
        began = time.perf_counter()
        images, _ = run()
    return images / (time.perf_counter() - began)


def ratio_for(model: str, data_root: str, input_size: int, repeats: int,
              echo: Callable[[str], None] = print, inject: float = 0.0) -> Ratio:
    """Harness images/s over the bare loop's, each side's fastest of ``repeats`` (rounded up to
    even), half run bare first."""
    repeats += repeats % 2
    rates: dict[str, list[float]] = {"bare_loop": [], "harness": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            for kind in (("bare_loop", "harness") if i % 2 == 0 else ("harness", "bare_loop")):
                rates[kind].append(in_fresh_process(f"{model} {kind}", images_per_second, kind, model, data_root,
                                                    f"{tmp}/{kind}{i}", input_size, inject))
            echo(f"  {model} repeat {i}: bare {rates['bare_loop'][-1]:.2f} img/s, "
                 f"harness {rates['harness'][-1]:.2f} img/s")
    injected = f", {inject:.0%} injected" if inject else ""
    # the same images on both sides: each side's fastest run is its highest rate
    value = max(rates["harness"]) / max(rates["bare_loop"])
    size = f"{input_size} px" if model in RESIZABLE else "tier's size"
    return Ratio("eval", f"eval images/s, harness / reference loop ({model}, {size}{injected})",
                 value, TARGET, "higher", "x",
                 f"fastest of {repeats} each, {max(rates['harness']):.2f} vs {max(rates['bare_loop']):.2f} img/s")


def write_data(root: Path, images: int) -> str:
    from tests.coco_layout import write_coco_layout

    write_coco_layout(root / "coco2017", val_images=images, train_images=1, sizes=COCO_SIZES)
    return str(root)


def measure(models: Sequence[str] = MODELS, images: int = 8, input_size: int = 320, repeats: int = 4,
            echo: Callable[[str], None] = print, inject: float = 0.0) -> list[Ratio]:
    with tempfile.TemporaryDirectory() as tmp:
        data_root = write_data(Path(tmp), images)
        return [ratio_for(m, data_root, input_size, repeats, echo, inject) for m in models]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="all", help=f"all, or comma-separated of: {', '.join(MODELS)}")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--input-size", type=int, default=320,
                        help=f"the input size of {', '.join(RESIZABLE)} (the others keep their tier's)")
    parser.add_argument("--inject-overhead", type=float, default=0.0, metavar="F",
                        help="busy-wait F of each harness batch's time (the benchmark must then miss)")
    args = parser.parse_args(argv)
    for name in ("images", "repeats", "input_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: {getattr(args, name)} must be >= 1")
    models = MODELS if args.model == "all" else tuple(m.strip() for m in args.model.split(","))
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        print(f"error: --model: {unknown[0]!r} has no eval tier; known: {', '.join(MODELS)}", file=sys.stderr)
        return 2
    ratios = measure(models, args.images, args.input_size, args.repeats, inject=args.inject_overhead)
    for r in ratios:
        print(f"{r.name}: {r.value:.3f} (target >= {TARGET}) -> {'OK' if r.ok else 'BELOW TARGET'} ({r.detail})")
    return 0 if all(r.ok for r in ratios) else 1


if __name__ == "__main__":
    sys.exit(main())
