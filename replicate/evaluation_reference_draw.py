"""One step of ``replicate calibrate --evaluation-reference``, run in a process of its own (the
parent sets the numeric variant in this process's environment: ATen picks its kernels when torch
loads).

Argument: a JSON object {"mode": "export" | "score", "overrides": [...], "threads": N,
"checkpoint": PATH (export), "weights": PATH, "sha256": HEX (score), "images": N (score),
"out": PATH}.

- export: the smoke job's loop is set up, the trained checkpoint loaded into its model, and the
  model's whole state written as the evaluation weights file ``weights``;
- score: the loop is set up and the weights scored through its evaluation
  (replicate/runner/evaluation_reference.py's ``score_weights``, what every smoke job runs).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any


def build_set_up_loop(overrides: list[str], threads: int, checkpoint_dir: Path) -> Any:
    """The smoke job's loop, set up (data, model) as a job's is before it trains."""
    from replicate.config.compose import compose_config
    from replicate.jobs import JobResult
    from replicate.resolved import resolve_job
    from replicate.runner.base_loop import RunContext
    from replicate.runner.numeric_threads import apply_job_threads
    from replicate.runner.worker import build_loop

    job = resolve_job(compose_config([*overrides, f"num_threads={threads}"]), None)   # the draw's threads, the job's
    apply_job_threads(job.threads)
    ctx = RunContext(checkpoint_dir=checkpoint_dir, progress=False, metric=job.target.metric, threads=job.threads)
    loop = build_loop(job.spec, job.cfg, ctx, JobResult(job_id=job.spec.job_id))
    loop.setup()
    return loop


def main(argv: list[str]) -> int:
    from replicate.runner import evaluation_reference as reference
    from replicate.runner.environment import numeric_variant

    args = json.loads(argv[0])
    threads = int(args["threads"])
    with tempfile.TemporaryDirectory(prefix="zoo-evalref-") as scratch:
        loop = build_set_up_loop(list(args["overrides"]), threads, Path(scratch))
        if args["mode"] == "export":
            loop.load_weights(Path(args["checkpoint"]))
            digest = reference.write_weights(loop.state_snapshot(), Path(args["weights"]), loop.cfg.model.name,
                                             loop.task.ctx.framework)
            out: dict[str, Any] = {"sha256": digest, "dataset_hash": loop.dataset_hash}
        else:
            metrics = reference.score_weights(loop, Path(args["weights"]), str(args["sha256"]), int(args["images"]))
            out = {"metrics": metrics, **numeric_variant(threads)}
    Path(args["out"]).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
