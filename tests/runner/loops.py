"""A job's loop built and set up as a worker builds it, for tests of what runs on the loop's path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from replicate.config.compose import compose_config
from replicate.jobs import JobResult
from replicate.resolved import make_spec
from replicate.runner.base_loop import RunContext
from replicate.runner.worker import build_loop


def set_up_loop(overrides: list[str], results_dir: Path, data_root: Path) -> Any:
    """The loop of the job ``overrides`` compose (results and data where given), after ``setup``."""
    cfg = compose_config([*overrides, f"results_dir={results_dir}", f"datasets.shapes.root={data_root}"])
    spec = make_spec(cfg, None)
    loop = build_loop(spec, cfg, RunContext(checkpoint_dir=results_dir / "job", progress=False),
                      JobResult(spec.job_id))
    loop.setup()
    return loop
