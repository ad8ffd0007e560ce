"""Typed errors. Library code raises these; only the CLI turns them into exit codes."""

from __future__ import annotations


class ZooError(Exception):
    """Base of every error zoo-replicate raises on purpose."""

    exit_code = 1


class UserInputError(ZooError):
    """Bad input from the user: a config key, a file, a resource request. Exit code 2."""

    exit_code = 2


class ConfigError(UserInputError):
    """A configuration value is missing or invalid; ``key`` names it."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")


class DataError(UserInputError):
    """A dataset file is missing or corrupt; ``path`` names it."""

    def __init__(self, path: str, message: str):
        self.path = path
        super().__init__(f"{path}: {message}")


class ResourceUnavailable(UserInputError):
    """The cluster lacks a resource a job asks for (a GPU kind, TPU chips)."""


class NumericalError(ZooError):
    """A loss or metric became NaN or Inf during training."""


class ScheduleError(ZooError):
    """The learning rate an optimizer applied is not the recipe's schedule at that step
    (replicate/runner/schedule_check.py): training runs another recipe than the one it claims."""


class PathInvariantBroken(ZooError):
    """The path the job runs breaks what any correct model's does (replicate/runner/path_invariants.py):
    evaluating changes the model, depends on its batch mates or differs when repeated, or a step
    runs in the other mode. ``stage`` says where (evaluation, training)."""

    def __init__(self, stage: str, message: str):
        self.stage = stage
        super().__init__(message)


class EvaluationPathChanged(PathInvariantBroken):
    """The smoke tier's calibrated evaluation weights no longer score what they scored at
    calibration through the job's evaluation path (replicate/runner/evaluation_reference.py)."""

    def __init__(self, message: str):
        super().__init__("evaluation", message)


class SplitLeak(ZooError):
    """The split a job evaluates on shares its images with the split it trains on: the metric
    would measure memorisation (replicate/data/leakage.py)."""


class StorageError(ZooError):
    """A file the run writes could not be written (disk full, read-only, gone): the machine's
    fault, not the model's; ``path`` names it."""

    def __init__(self, path: str, cause: BaseException | str):
        self.path = path
        super().__init__(f"{path}: cannot write ({cause})")


class StoreError(UserInputError):
    """The results store cannot be opened, read or written (corrupt, read-only, gone, full,
    unreachable); the message names the database. Exit code 2."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (what Kubernetes sends a pod it stops), raised like Ctrl-C so every ``finally``
    runs; the CLI ends with exit code 143 (128 + SIGTERM)."""
