"""One-shot GPU check: the product's normal job path (run_job, no Ray) for each torch smoke job.

Per model: compose the config as benchmarks/data_parallel.py's ``_job`` does (compose_config +
resolve_job) with hardware=h100x1 (a GPU profile: pick_device then requires CUDA, else the job
is INFRA), a few steps on a small shapes set (as tests/conftest.py's TINY), prepare the dataset,
run_job(job, progress=False), and report failure, metrics, throughput, times and the device used
(environment["accelerator"] and torch.cuda.max_memory_allocated()). Writes --out (JSON); exits
1 if any job failed (or none ran).

    python scripts/gpu_check/smoke_on_cuda.py [--models yolov4] [--hardware cpu] [--steps 8] [--out x.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODELS = ("faster_rcnn", "mask_rcnn", "retinanet", "centernet", "pix2pix", "yolov3", "yolov4")


def overrides(model: str, hardware: str, results: Path, steps: int, image_size: int) -> list[str]:
    recipe = "model.tiers.smoke.recipe"
    return [f"model={model}", f"hardware={hardware}", f"results_dir={results}", "tier.compare_with=none",
            "logger=none", "framework=torch",
            # tests/conftest.py TINY, with a few more steps
            "datasets.shapes.num_train=16", "datasets.shapes.num_val=8", f"datasets.shapes.image_size={image_size}",
            f"{recipe}.steps={steps}", f"{recipe}.checkpoint_every={max(1, steps // 2)}",
            f"{recipe}.log_every={max(1, steps // 2)}",
            f"model.tiers.smoke.input_size={image_size}"]


def run_one(model: str, args: argparse.Namespace, results: Path) -> dict:
    import torch

    from replicate.config.compose import compose_config
    from replicate.data.prepare import prepare_dataset
    from replicate.resolved import resolve_job
    from replicate.runner.worker import run_job

    row: dict = {"model": model, "hardware": args.hardware}
    began = time.perf_counter()
    cfg = compose_config(overrides(model, args.hardware, results, args.steps, args.image_size))
    job = resolve_job(cfg, None)
    row.update(job_id=job.spec.job_id, framework=job.spec.framework, variant=job.spec.variant)
    prepare_dataset(job.cfg.datasets[job.cfg.model.tiers.smoke.data])
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    result = run_job(job, progress=False)
    env = result.environment
    row.update(
        failure=None if result.failure is None else
        {"stage": result.failure.stage, "impact": result.failure.impact, "message": result.failure.message,
         "exception_tail": (result.failure.exception or "")[-1500:]},
        infra=result.infra, metrics=result.metrics, throughput=result.throughput,
        steps_done=result.steps_done, steps_planned=result.steps_planned, images_seen=result.images_seen,
        times={"setup_s": result.times.setup_s, "train_s": result.times.train_s, "eval_s": result.times.eval_s},
        curve_tail=result.curve[-3:],
        accelerator=env.get("accelerator"), cuda=env.get("cuda"), cudnn=env.get("cudnn"), driver=env.get("driver"),
        torch=env.get("torch"), torchvision=env.get("torchvision"), numpy=env.get("numpy"),
        cuda_max_memory_allocated=int(torch.cuda.max_memory_allocated()) if cuda else None,
        wall_s=round(time.perf_counter() - began, 2))
    row["used_gpu"] = bool(cuda and row["cuda_max_memory_allocated"])
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--hardware", default="h100x1", help="hardware profile (cpu: a local run of this script)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--results-dir", default=None, help="default: a fresh temporary folder")
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "smoke_on_cuda.json"))
    args = parser.parse_args(argv)
    results = Path(args.results_dir or tempfile.mkdtemp(prefix="zoo-smoke-cuda-"))   # one data set, shared

    rows = []
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        try:
            row = run_one(model, args, results)
        except Exception as exc:  # noqa: BLE001 - the harness itself broke: a row, and the next model
            row = {"model": model, "failure": {"stage": "check script", "impact": "crash",
                                               "message": f"{type(exc).__name__}: {exc}"[:500],
                                               "exception_tail": traceback.format_exc()[-1500:]}}
        rows.append(row)
        failure = row.get("failure")
        print(f"[smoke] {model}: failure={failure['message'] if failure else None} "
              f"metrics={row.get('metrics')} throughput={row.get('throughput')} times={row.get('times')} "
              f"accelerator={row.get('accelerator')} cuda_max_mem={row.get('cuda_max_memory_allocated')} "
              f"steps={row.get('steps_done')}/{row.get('steps_planned')} wall={row.get('wall_s')}s", flush=True)
        if failure:
            print(failure.get("exception_tail", ""), flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"rows": rows}, indent=1, default=str))   # after each model

    failed = [r["model"] for r in rows if r.get("failure")]
    print(f"[smoke] {len(rows) - len(failed)}/{len(rows)} ok; failed: {failed or 'none'}; json: {args.out}")
    return 1 if failed or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
