"""One numeric environment per job, whoever runs it.

A job's floating-point path depends on how many threads split its reductions: torch's intra-op
pool, OpenMP (read from ``OMP_NUM_THREADS`` by whatever initialises later), and TensorFlow's
intra-/inter-op pools, which are fixed for the whole process the first time TensorFlow runs.
Inline, a job used to inherit whatever the CLI process held (TensorFlow already initialised with
2 threads by an earlier step), under Ray whatever Ray put in the worker's environment
(``OMP_NUM_THREADS=1``): the same job gave two numbers. Every job now sets all of them from its
resolved plan before anything is built, here, in a Ray worker and in a data-parallel worker alike.
"""

from __future__ import annotations

import os
import sys
from typing import Any

# Frameworks whose thread pools are fixed for the process once they run: under Ray each of their
# jobs gets a worker process of its own (replicate/scheduling/ray_scheduler.py), so a reused worker
# never hands a job the pools an earlier job of another thread count fixed.
PROCESS_WIDE_POOLS = frozenset({"tensorflow"})


def apply_job_threads(threads: int) -> dict[str, Any]:
    """Set every thread pool that decides this job's numbers to ``threads`` (TensorFlow's
    inter-op pool to 1, when it is first imported) and return torch's, for the job's record.

    Raises:
        ResourceUnavailable: TensorFlow already runs in this process with another pool size
            (it cannot be changed once initialised); under Ray each TensorFlow job gets a fresh
            worker process, so only an inline run of TensorFlow jobs of different thread counts
            meets this.
    """
    import torch

    threads = int(threads)
    # Before TensorFlow or any OpenMP library initialises in this job, and inherited by the data
    # loader's worker processes: they then read the plan's count, not the launcher's.
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    if "tensorflow" in sys.modules:   # imported already: its pools must hold this count (else raises)
        from replicate.tf_import import tensorflow

        tensorflow(threads)
    # TensorFlow's pools, once it has run, are recorded with the job's environment
    # (replicate/runner/environment.py numeric_variant).
    return {"torch_threads": torch.get_num_threads()}
