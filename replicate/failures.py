"""Classify why a job failed: stage and impact, from the reengineering defect study's taxonomy."""

from __future__ import annotations

import traceback

from replicate.errors import (
    DataError,
    NumericalError,
    PathInvariantBroken,
    ResourceUnavailable,
    ScheduleError,
    SplitLeak,
    StorageError,
)
from replicate.jobs import Failure


def classify(exc: BaseException, stage: str) -> Failure:
    """Map an exception raised during ``stage`` to a Failure.

    The exception type says the impact; the stage the loop was in says where the defect sits,
    except for errors whose type already names the stage (environment, data).
    """
    message = f"{type(exc).__name__}: {exc}".strip()
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:]
    if isinstance(exc, (ImportError, ModuleNotFoundError)):
        return Failure("environment", "crash", message, tb)
    if isinstance(exc, StorageError):  # disk full, read-only volume: the machine's fault, not the model's
        return Failure("infrastructure", "crash", message, tb)
    if isinstance(exc, ResourceUnavailable):  # the worker lacks what the profile promised: the cluster's fault
        return Failure("infrastructure", "crash", message, tb)
    if isinstance(exc, SplitLeak):   # the evaluation reads what training saw: a wrong metric, not a crash
        return Failure("evaluation", "incorrect functionality", message, tb)
    if isinstance(exc, PathInvariantBroken):   # a defect on the job's own path: wrong numbers, not a crash
        return Failure(exc.stage, "incorrect functionality", str(exc), tb)
    if isinstance(exc, ScheduleError):   # the optimizer ran another schedule than the recipe's
        return Failure("training", "incorrect functionality", str(exc), tb)
    if isinstance(exc, DataError):
        return Failure("data pipeline", "crash", message, tb)
    if isinstance(exc, NumericalError):
        return Failure(stage if stage in ("training", "evaluation") else "training", "numerical error", message, tb)
    if is_oom(exc):
        return Failure(stage, "memory exhaustion", message, tb)
    if isinstance(exc, TimeoutError):
        return Failure(stage, "hang", message, tb)
    if isinstance(exc, AttributeError) and stage == "environment":
        return Failure("environment", "crash", message, tb)  # API mismatch of a library version
    return Failure(stage, "crash", message, tb)


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()
