"""One calibration draw, run by ``replicate calibrate`` in a process of its own.

The parent sets the numeric variant in this process's environment (ATEN_CPU_CAPABILITY and
friends are read when torch loads), so the job must start here, not in a reused worker.
Argument: a JSON object {"overrides": [...], "threads": N, "out": PATH, "early_only": BOOL}; writes
the draw to PATH. ``early_only``: replay the first quarter only, up to the early check, and
record its training loss and weight drift (no evaluation).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> int:
    args = json.loads(argv[0])
    from replicate.config.compose import compose_config
    from replicate.resolved import resolve_job
    from replicate.runner.environment import numeric_variant
    from replicate.runner.worker import run_job
    from replicate.verdict import final_loss

    # the draw's thread count is the job's own (num_threads), so the job decides its pools as any job does
    job = resolve_job(compose_config([*args["overrides"], f"num_threads={int(args['threads'])}"]), None)
    early_only = bool(args.get("early_only"))
    began = time.perf_counter()
    result = run_job(job, progress=False, stop_at_early=early_only)
    if result.failure is not None:
        print(f"draw failed: {result.failure.message}", file=sys.stderr)
        return 1
    metric = job.target.metric
    if metric is None:
        print("draw failed: the smoke tier names no metric", file=sys.stderr)
        return 1
    check = result.early_check
    measured: dict[str, Any] = {"metric": metric, "early_loss": check.get("train_loss"),
                                "early_drift": check.get("weight_drift"), "early_step": check.get("step")}
    if not early_only:
        measured |= {"final": result.metrics.get(metric), "early": check.get("metric"),
                     "final_loss": final_loss(result)}
    # the tier's also_judged metrics, each judged from its own draws
    also = {} if early_only else {str(name): result.metrics.get(name) for name in job.cfg.model.tiers.smoke.also_judged}
    missing = sorted(k for k, v in {**measured, **also}.items() if v is None)
    if missing:
        print(f"draw failed: not measured: {', '.join(missing)}", file=sys.stderr)
        return 1
    Path(args["out"]).write_text(json.dumps({
        **{k: (float(v) if k not in ("metric", "early_step") else v) for k, v in measured.items()},
        "also": {k: float(v) for k, v in also.items() if v is not None},
        "wall_s": round(time.perf_counter() - began, 1), "config_hash": job.spec.config_hash,
        **numeric_variant(int(args["threads"]))}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
