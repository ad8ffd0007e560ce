"""Data-parallel scaling on CPU: one smoke job's training throughput on 2 Ray Train workers
against 1 process, at the same global batch (replicate/runner/data_parallel.py).

Both runs train yolov4's smoke job for the same steps at the same global batch, each worker on
one thread; the ratio is the 2-worker group's training images/s over the single process's (rank
0's images/s counts the whole global batch). Target >= 1.5x on 2 cores (75% scaling: gloo's
gradient exchange each step is not free).

    python -m benchmarks.data_parallel [--steps 60]
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

TARGET = 1.5
MODEL = "yolov4"


def _job(results: Path, steps: int) -> object:
    from replicate.config.compose import compose_config
    from replicate.resolved import resolve_job

    recipe = "model.tiers.smoke.recipe"
    cfg = compose_config([f"model={MODEL}", f"results_dir={results}", "tier.compare_with=none", "logger=none",
                          f"{recipe}.steps={steps}", f"{recipe}.checkpoint_every={steps}", f"{recipe}.eval_batches=1"])
    return resolve_job(cfg, None)


def measure(steps: int = 60, echo: Callable[[str], None] = print) -> list[Ratio]:
    import ray

    from replicate.data.prepare import prepare_dataset
    from replicate.runner.data_parallel import run_data_parallel
    from replicate.runner.worker import run_job

    work = Path(tempfile.mkdtemp(prefix="zoo-dp-"))
    try:
        single = _job(work / "one", steps)
        prepare_dataset(single.cfg.datasets.shapes)   # generated before either run is timed
        with contextlib.redirect_stderr(io.StringIO()):
            one = run_job(single, progress=False, num_threads=1)
            if not ray.is_initialized():
                ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
            group = _job(work / "two", steps)
            shutil.copytree(work / "one" / "data", work / "two" / "data")
            two = run_data_parallel(group, 2, num_threads=1)
        for name, result in (("1 process", one), ("2 workers", two)):
            if result.failure is not None or not result.throughput:
                raise RuntimeError(f"{name}: {result.failure.message if result.failure else 'no throughput'}")
        echo(f"  data parallel ({MODEL}, {steps} steps): {one.throughput:.1f} images/s in one process, "
             f"{two.throughput:.1f} on 2 workers")
        return [Ratio("dp", f"training images/s, 2 gloo workers / 1 process ({MODEL} smoke, same global batch)",
                      two.throughput / one.throughput, TARGET, "higher", "x",
                      f"{two.throughput:.1f} vs {one.throughput:.1f} images/s, {steps} steps")]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args(argv)
    return print_report(measure(args.steps))


if __name__ == "__main__":
    sys.exit(main())
