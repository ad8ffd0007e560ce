"""Scheduling: smoke jobs two at a time against one after another, and a job's fixed cost in Ray.

1. The same smoke jobs through the local Ray scheduler with 2 CPUs (two 1-thread jobs side by
   side) and with 1 CPU (one after another): serial wall / parallel wall, target >= 1.8x on 2
   cores. Default jobs: the four shortest smoke jobs (yolov4, yolov3, pix2pix, centernet);
   ``--all`` takes the whole smoke suite (about 15 minutes on 2 cores).
2. One job (yolov4's smoke job, the shortest) through Ray against the same job in this process
   (the inline scheduler): the difference is what Ray, the data pre-flight, the store and the
   report add; target under 5% of that job's time in-process.

    python -m benchmarks.scheduling [--all]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from benchmarks.ratio import Ratio, print_report

PARALLEL_TARGET = 1.8
FIXED_COST_TARGET = 0.05
SHORT_JOBS = ("yolov4", "yolov3", "pix2pix", "centernet")


def _suite_wall(overrides: Sequence[str]) -> tuple[float, list[str]]:
    """Wall seconds of ``replicate suite`` with these overrides, and its verdicts."""
    from replicate.harness import run_suite

    began = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        result = run_suite(list(overrides), echo=lambda _: None)
    return time.perf_counter() - began, [row["verdict"] for row in result.jobs]


def _ray_shutdown() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


def parallel_speedup(models: Optional[Sequence[str]], work: Path, echo: Callable[[str], None],
                     extra: Sequence[str] = ()) -> Ratio:
    """Serial wall over parallel wall of the same smoke jobs (each in a results_dir of its own)."""
    entries = ",".join(f"{{model: {m}, tier: smoke, hardware: cpu, seeds: [0]}}" for m in models or [])
    subset = [f"suite.entries=[{entries}]"] if models else []
    walls = {}
    for cpus in (2, 1):
        _ray_shutdown()   # each measurement starts its own local Ray with its CPU count
        data = f"datasets.shapes.root={work / 'shapes'}"   # generated before (_prepare_data)
        walls[cpus], verdicts = _suite_wall(["suite=smoke", f"results_dir={work / f'cpus{cpus}'}", data, "logger=none",
                                             "scheduler=local", f"scheduler.num_cpus={cpus}", *subset, *extra])
        echo(f"  scheduling: {len(verdicts)} jobs on {cpus} CPU(s): {walls[cpus]:.0f}s ({', '.join(verdicts)})")
    _ray_shutdown()
    jobs = ", ".join(models) if models else "the smoke suite"
    return Ratio("scheduling", f"two jobs at a time vs one ({jobs})", walls[1] / walls[2], PARALLEL_TARGET, "higher",
                 "x", f"{walls[1]:.0f}s serial, {walls[2]:.0f}s parallel")


def fixed_cost(work: Path, echo: Callable[[str], None], extra: Sequence[str] = ()) -> Ratio:
    """(Ray wall - in-process wall) / in-process wall of yolov4's smoke job."""
    from replicate.harness import run_one

    data = f"datasets.shapes.root={work / 'shapes'}"
    walls = {}
    for scheduler in ("inline", "local"):
        _ray_shutdown()
        began = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            run_one(["model=yolov4", f"results_dir={work / scheduler}", data, "logger=none", f"scheduler={scheduler}",
                     *extra], echo=lambda _: None)
        walls[scheduler] = time.perf_counter() - began
        echo(f"  scheduling: yolov4 smoke job, scheduler {scheduler}: {walls[scheduler]:.1f}s")
    _ray_shutdown()
    added = walls["local"] - walls["inline"]
    return Ratio("scheduling", "a job's fixed cost through Ray (yolov4 smoke)", added / walls["inline"],
                 FIXED_COST_TARGET, "lower", "x",
                 f"{walls['local']:.1f}s through Ray (starting it included), {walls['inline']:.1f}s in-process")


def _prepare_data(work: Path, extra: Sequence[str]) -> None:
    """Generate the shapes data once, before any clock starts."""
    from replicate.config.compose import compose_config
    from replicate.data.prepare import prepare_dataset

    cfg = compose_config(["model=yolov4", f"datasets.shapes.root={work / 'shapes'}", *extra])
    prepare_dataset(cfg.datasets.shapes)


def measure(all_jobs: bool = False, echo: Callable[[str], None] = print, extra: Sequence[str] = (),
            models: Optional[Sequence[str]] = SHORT_JOBS) -> list[Ratio]:
    work = Path(tempfile.mkdtemp(prefix="zoo-scheduling-"))
    try:
        _prepare_data(work, extra)
        return [parallel_speedup(None if all_jobs else models, work, echo, extra), fixed_cost(work, echo, extra)]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="the whole smoke suite (about 15 minutes)")
    args = parser.parse_args(argv)
    ratios = measure(args.all)
    return print_report(ratios)


if __name__ == "__main__":
    sys.exit(main())
