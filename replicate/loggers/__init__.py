"""Experiment loggers: where job and suite results go besides the store (W&B).

A logger is pluggable infrastructure, chosen with ``logger=`` and built from its Hydra
``_target_``. It offers ``log_job(record)`` (after the job's row is saved),
``log_suite(suite_id, rows, report_dir)`` (at suite end) and ``where()`` (a line saying where its
output lands). ``logger=none`` has no target: no logger at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Sequence, runtime_checkable

from omegaconf import DictConfig

from replicate.errors import ConfigError


@runtime_checkable
class RunLogger(Protocol):
    """What the harness asks of a logger (the contract every ``logger._target_`` meets)."""

    echo: Callable[[str], None]

    def log_job(self, record: dict[str, Any]) -> None: ...

    def log_suite(self, suite_id: str, rows: list[dict[str, Any]], report_dir: Optional[Path],
                  alerts: Sequence[Any] = ()) -> None: ...

    def where(self) -> str: ...


def make_logger(cfg: DictConfig, echo: Callable[[str], None]) -> Optional[RunLogger]:
    """The logger of ``cfg.logger``, or None when it names no ``_target_`` (``logger=none``).

    Building one is cheap and touches nothing: a W&B run starts only when a job is logged, so a
    suite that fails before its first job leaves no W&B files.
    """
    from replicate.config.infra import build

    logger_cfg = cfg.get("logger")
    if not logger_cfg or "_target_" not in logger_cfg:
        return None
    logger = build(logger_cfg, "logger")   # a bad logger.mode reaches the CLI as a typed error (exit 2)
    logger.echo = echo
    if not isinstance(logger, RunLogger):
        raise ConfigError("logger._target_", f"{type(logger).__name__} lacks log_job, log_suite or where")
    return logger


def log_suite_end(store: Any, suite_id: str, report_dir: Optional[Path], logger: Optional[RunLogger],
                  echo: Callable[[str], None], alerts: Sequence[Any] = ()) -> Optional[str]:
    """At suite end: log the leaderboard (and the report folder the harness wrote) to the logger,
    with the suite's alerts (replicate/report/alerts.py) raised on its leaderboard run.

    It cannot fail the suite: the store already holds every result, so a failure to read the
    leaderboard is reported in one line and the suite's verdicts stand.

    Returns:
        The logger's where-line, or None without a logger.
    """
    if logger is None:
        return None
    try:
        from replicate.leaderboard import leaderboard_rows

        rows = leaderboard_rows(store, suite_id)
    except Exception as exc:   # noqa: BLE001 - the leaderboard is a view of the store
        echo(f"leaderboard: failed ({type(exc).__name__}: {exc}); the store has every result")
        return logger.where()
    logger.log_suite(suite_id, rows, report_dir, alerts)
    return logger.where()
