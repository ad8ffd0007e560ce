"""A job's CPU threads are decided once, when it is resolved, and travel inside the job: the
scheduler's CPUs, the worker's pools and the loop read the same number, whoever runs it."""

from __future__ import annotations

import json
import subprocess
import sys

from replicate.config.compose import compose_config
from replicate.resolved import ResolvedJob, resolve_job
from replicate.scheduling.resources import job_threads, task_options


def test_the_job_carries_its_threads_over_the_wire():
    cfg = compose_config(["model=yolov4", "num_threads=3"])
    job = resolve_job(cfg, None)
    assert job.threads == job_threads(cfg) == 3
    assert task_options(cfg)["num_cpus"] == 3.0          # what Ray reserves for it
    back = ResolvedJob.from_wire(job.to_wire())
    assert back.threads == 3 and back.job_id == job.job_id
    # the tier's fixed count where none is given on the command line (smoke: 1, portable results)
    assert resolve_job(compose_config(["model=yolov4"]), None).threads == 1


WORKER = """
import dataclasses, json, sys
from replicate.config.compose import compose_config
from replicate.resolved import resolve_job
from replicate.runner.worker import run_job
job = resolve_job(compose_config(json.loads(sys.argv[1])), None)
two = run_job(job, progress=False)
one = run_job(dataclasses.replace(job, threads=1), progress=False)
print(json.dumps([job.threads, two.failure is None, two.environment.get("torch_threads"),
                  two.environment.get("num_threads"), one.environment.get("torch_threads")]))
"""


def test_the_worker_runs_on_the_jobs_threads(results_dir, shapes_root, tiny):
    """In a process of its own, as a Ray worker (TensorFlow, once it has run in a process, holds
    its pools: this test session's are taken)."""
    overrides = ["model=yolov4", "tier.compare_with=none", "num_threads=2", f"results_dir={results_dir}",
                 f"datasets.shapes.root={shapes_root}", *tiny]
    out = subprocess.run([sys.executable, "-c", WORKER, json.dumps(overrides)], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    decided, ok, torch_threads, recorded, changed = json.loads(out.stdout.strip().splitlines()[-1])
    assert decided == 2 and ok and torch_threads == 2 and recorded == 2
    # the job's number, not the config's: a caller that decides otherwise (a calibration draw)
    # changes the job, and the pools follow it
    assert changed == 1
