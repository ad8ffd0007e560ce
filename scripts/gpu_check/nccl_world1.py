"""One-shot GPU check: the data-parallel worker path without Ray, as one rank of a world of 1.

Sets MASTER_ADDR/MASTER_PORT/RANK/WORLD_SIZE, init_process_group(backend), a sanity all_reduce,
then run_job(job, progress=False, rank=0, world_size=1) for yolov4's smoke job with hardware=h100x1
and a few steps. NOTE: TorchLoop.data_parallel is ``world_size > 1``, so with world_size 1 the
model is NOT wrapped in DDP and no collective runs inside the job; this checks that the process
group coexists with the job path (and NCCL itself via the all_reduce below), not the DDP wrap.
Writes --out (JSON); exits 1 on any failure.

    python scripts/gpu_check/nccl_world1.py [--backend gloo --hardware cpu] [--out x.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def nccl_version() -> str | None:
    import torch

    try:
        return ".".join(map(str, torch.cuda.nccl.version())) if torch.cuda.is_available() else None
    except Exception as exc:  # noqa: BLE001
        return f"unknown ({type(exc).__name__}: {exc})"


def forced_ddp(overrides: list[str], results: Path) -> dict:
    """Informative: the same job again with TorchLoop.data_parallel patched to True in this process
    only (no product file changes), so the DDP wrap (ForwardingDDP), the per-step
    averaged_over_workers all_reduce and the eval-time buffer broadcast run on this backend."""
    import torch

    from replicate.config.compose import compose_config
    from replicate.resolved import resolve_job
    from replicate.runner.torch_loop import TorchLoop
    from replicate.runner.worker import run_job

    original = TorchLoop.__dict__["data_parallel"]
    TorchLoop.data_parallel = property(lambda self: True)
    try:
        job = resolve_job(compose_config([*overrides, f"results_dir={results}"]), None)
        began = time.perf_counter()
        result = run_job(job, progress=False, rank=0, world_size=1)
        return {"ok": result.failure is None, "failure": None if result.failure is None else
                {"stage": result.failure.stage, "message": result.failure.message,
                 "exception_tail": (result.failure.exception or "")[-1200:]},
                "steps_done": result.steps_done, "metrics": result.metrics, "throughput": result.throughput,
                "wall_s": round(time.perf_counter() - began, 2),
                "cuda_max_memory_allocated":
                    int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500], "traceback": traceback.format_exc()[-1500:]}
    finally:
        TorchLoop.data_parallel = original


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="nccl")
    parser.add_argument("--hardware", default="h100x1")
    parser.add_argument("--model", default="yolov4")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--port", default="29531")
    parser.add_argument("--force-ddp", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the job with TorchLoop.data_parallel forced on (informative only)")
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "nccl_world1.json"))
    args = parser.parse_args(argv)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=args.port, RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")

    import torch
    import torch.distributed as dist

    report: dict = {"backend": args.backend, "hardware": args.hardware, "model": args.model,
                    "torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
                    "nccl_version": nccl_version()}
    ok = False
    try:
        began = time.perf_counter()
        if args.backend == "nccl":
            torch.cuda.set_device(0)
        dist.init_process_group(args.backend, timeout=timedelta(seconds=120))
        report["init_s"] = round(time.perf_counter() - began, 2)
        device = "cuda" if args.backend == "nccl" else "cpu"
        probe = torch.ones(4, device=device) * 3
        dist.all_reduce(probe)
        report["all_reduce"] = probe.tolist()
        report["world_size"], report["rank"] = dist.get_world_size(), dist.get_rank()

        from replicate.config.compose import compose_config
        from replicate.data.prepare import prepare_dataset
        from replicate.resolved import resolve_job
        from replicate.runner.worker import run_job

        recipe = "model.tiers.smoke.recipe"
        results = Path(tempfile.mkdtemp(prefix="zoo-nccl1-"))
        ovr = [f"model={args.model}", f"hardware={args.hardware}", "tier.compare_with=none", "logger=none",
               "framework=torch", "datasets.shapes.num_train=16", "datasets.shapes.num_val=8",
               "datasets.shapes.image_size=64", "model.tiers.smoke.input_size=64",
               f"{recipe}.steps={args.steps}", f"{recipe}.checkpoint_every={max(1, args.steps // 2)}",
               f"{recipe}.log_every={max(1, args.steps // 2)}", f"{recipe}.eval_batches=1"]
        cfg = compose_config([*ovr, f"results_dir={results}"])
        job = resolve_job(cfg, None)
        prepare_dataset(job.cfg.datasets.shapes)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        result = run_job(job, progress=False, rank=0, world_size=1)
        report.update(
            failure=None if result.failure is None else
            {"stage": result.failure.stage, "message": result.failure.message,
             "exception_tail": (result.failure.exception or "")[-1500:]},
            metrics=result.metrics, throughput=result.throughput, steps_done=result.steps_done,
            times={"setup_s": result.times.setup_s, "train_s": result.times.train_s, "eval_s": result.times.eval_s},
            accelerator=result.environment.get("accelerator"),
            cuda_max_memory_allocated=int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None,
            ddp_wrapped=False)   # TorchLoop wraps in DDP only when world_size > 1
        ok = result.failure is None
        dist.barrier()
        if args.force_ddp:
            report["forced_ddp"] = forced_ddp(ovr, results.with_name(results.name + "-ddp"))
    except Exception as exc:  # noqa: BLE001
        report["error"] = f"{type(exc).__name__}: {exc}"[:500]
        report["traceback"] = traceback.format_exc()[-2000:]
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1, default=str))
    print("[nccl] " + json.dumps({k: v for k, v in report.items() if k != "traceback"}, default=str))
    if report.get("traceback"):
        print(report["traceback"])
    if report.get("failure"):
        print(report["failure"].get("exception_tail", ""))
    print(f"[nccl] {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
