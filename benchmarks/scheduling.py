"""Scheduling: smoke jobs two at a time against one after another, and a job's fixed cost in Ray.

1. The same smoke jobs through the local Ray scheduler with 2 CPUs (two 1-thread jobs side by
   side) and with 1 CPU (one after another): serial wall / parallel wall, target >= 1.8x on 2
   cores. The serial run goes first and leaves the jobs' durations in the store, from which the
   parallel run starts the longest first (replicate/scheduling/deadlines.py, longest_first).
   Default jobs: the four shortest smoke jobs (yolov4, yolov3, pix2pix, centernet); ``--all``
   takes the whole smoke suite (about 15 minutes on 2 cores).
2. A job's fixed cost: yolov4's smoke job (the shortest), driver's wall minus the job's own work
   (composing, data pre-flight, Ray, store, report), on a running Ray, with a fresh worker and a
   reused one; and Ray's start, once per suite, against the serial suite's wall. Target: under 5%
   of the job's work, and of the suite's wall.

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
    if result.skipped:   # a measurement of jobs that did not run would time nothing
        raise RuntimeError(f"suite {result.suite_id}: {len(result.skipped)} job(s) skipped as finished before")
    return time.perf_counter() - began, [row["verdict"] for row in result.jobs]


def _ray_shutdown() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


def parallel_speedup(models: Optional[Sequence[str]], work: Path, echo: Callable[[str], None],
                     extra: Sequence[str] = ()) -> tuple[Ratio, float]:
    """Serial wall over parallel wall of the same smoke jobs (one store, a suite id each), and
    the serial wall."""
    entries = ",".join(f"{{model: {m}, tier: smoke, hardware: cpu, seeds: [0]}}" for m in models or [])
    subset = [f"suite.entries=[{entries}]"] if models else []
    walls = {}
    # One after another first: the store then holds each job's duration, which the parallel run
    # reads to start the longest first, as a nightly suite reads the night before's.
    for cpus in (1, 2):
        _ray_shutdown()   # each measurement starts its own local Ray with its CPU count
        data = f"datasets.shapes.root={work / 'shapes'}"   # generated before (_prepare_data)
        walls[cpus], verdicts = _suite_wall(["suite=smoke", f"results_dir={work / 'suites'}", f"suite_id=cpus{cpus}",
                                             data, "logger=none",
                                             "scheduler=local", f"scheduler.num_cpus={cpus}", *subset, *extra])
        echo(f"  scheduling: {len(verdicts)} jobs on {cpus} CPU(s): {walls[cpus]:.0f}s ({', '.join(verdicts)})")
    _ray_shutdown()
    jobs = ", ".join(models) if models else "the smoke suite"
    return Ratio("scheduling", f"two jobs at a time vs one ({jobs})", walls[1] / walls[2], PARALLEL_TARGET, "higher",
                 "x", f"{walls[1]:.0f}s serial, {walls[2]:.0f}s parallel"), walls[1]


def _beyond_the_work(scheduler: str, work: Path, tag: str, extra: Sequence[str]) -> tuple[float, float]:
    """yolov4's smoke job through ``run_one``: the seconds its driver spent beyond the job's own
    work (setup, training and evaluation as the worker timed them), and that work. Measured
    directly, not as the difference of two 30-s walls, which vary by several seconds here."""
    from replicate.harness import run_one

    began = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        result = run_one(["model=yolov4", f"results_dir={work / tag}", f"datasets.shapes.root={work / 'shapes'}",
                          "logger=none", f"scheduler={scheduler}", *extra], echo=lambda _: None)
    wall = time.perf_counter() - began
    job_work = float(result.jobs[0]["wall_s"])
    return wall - job_work, job_work


def fixed_cost(work: Path, echo: Callable[[str], None], extra: Sequence[str] = (),
               serial_wall: Optional[float] = None) -> list[Ratio]:
    """A job's fixed cost (composing, data pre-flight, Ray, store, report) over its own work, on
    a running Ray, as on a cluster: on a fresh worker (process start and imports; Ray gives every
    GPU task a fresh one) and on a reused one (CPU tasks, as in the smoke suite). Ray's own start,
    which a suite pays once, is set against the serial suite's wall."""
    from replicate.scheduling.ray_scheduler import RayScheduler

    inline_cost, inline_work = _beyond_the_work("inline", work, "inline", extra)
    echo(f"  scheduling: yolov4 smoke job in-process: {inline_cost:.1f}s beyond {inline_work:.1f}s of work")
    _ray_shutdown()
    began = time.perf_counter()
    RayScheduler().start()
    start_s = time.perf_counter() - began
    costs = {}
    for worker in ("fresh", "reused"):
        costs[worker] = _beyond_the_work("local", work, worker, extra)
        echo(f"  scheduling: through Ray, {worker} worker: {costs[worker][0]:.1f}s beyond {costs[worker][1]:.1f}s")
    _ray_shutdown()
    rows = [Ratio("scheduling", f"a job's fixed cost through Ray, {worker} worker (yolov4 smoke, Ray running)",
                  cost / job_work, FIXED_COST_TARGET, "lower", "x",
                  f"{cost:.1f}s beyond {job_work:.1f}s of work; in-process {inline_cost:.1f}s")
            for worker, (cost, job_work) in costs.items()]
    if serial_wall:
        rows.append(Ratio("scheduling", "Ray's start, once per suite, / the serial suite's wall", start_s / serial_wall,
                          FIXED_COST_TARGET, "lower", "x", f"{start_s:.1f}s of {serial_wall:.0f}s"))
    return rows


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
        speedup, serial_wall = parallel_speedup(None if all_jobs else models, work, echo, extra)
        return [speedup, *fixed_cost(work, echo, extra, serial_wall)]
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
