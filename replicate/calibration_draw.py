"""One calibration draw, run by ``replicate calibrate`` in a process of its own.

The parent sets the numeric variant in this process's environment (ATEN_CPU_CAPABILITY and
friends are read when torch loads), so the job must start here, not in a reused worker.
Argument: a JSON object {"overrides": [...], "threads": N, "out": PATH}; writes the draw to PATH.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    args = json.loads(argv[0])
    from replicate.config.compose import compose_config
    from replicate.plan import make_spec
    from replicate.runner.environment import numeric_variant
    from replicate.runner.worker import run_job
    from replicate.verdict import final_loss, target_for

    cfg = compose_config(args["overrides"])
    spec = make_spec(cfg, None)
    began = time.perf_counter()
    result = run_job(spec, progress=False, num_threads=int(args["threads"]))
    if result.failure is not None:
        print(f"draw failed: {result.failure.message}", file=sys.stderr)
        return 1
    metric = target_for(cfg, spec.variant).metric
    if metric is None:
        print("draw failed: the smoke tier names no metric", file=sys.stderr)
        return 1
    early, early_loss = result.early_check.get("metric"), result.early_check.get("train_loss")
    late_loss = final_loss(result)
    if early is None or early_loss is None or late_loss is None:
        print("draw failed: no metric or training loss at the early-check point, or no final loss", file=sys.stderr)
        return 1
    Path(args["out"]).write_text(json.dumps({
        "metric": metric, "final": float(result.metrics[metric]), "early": float(early),
        "early_loss": float(early_loss), "final_loss": float(late_loss),
        "early_step": result.early_check.get("step"), "wall_s": round(time.perf_counter() - began, 1),
        "config_hash": spec.config_hash, **numeric_variant(int(args["threads"]))}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
