"""Experiment loggers: where job and suite results go besides the store (W&B).

A logger is pluggable infrastructure, chosen with ``logger=`` and built from its Hydra
``_target_``. It offers ``log_job(record)`` (after the job's row is saved),
``log_suite(suite_id, rows, report_dir)`` (at suite end) and ``where()`` (a line saying where its
output lands). ``logger=none`` has no target: no logger at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from omegaconf import DictConfig


def make_logger(cfg: DictConfig, echo: Callable[[str], None]) -> Optional[Any]:
    """The logger of ``cfg.logger``, or None when it names no ``_target_`` (``logger=none``).

    Building one is cheap and touches nothing: a W&B run starts only when a job is logged, so a
    suite that fails before its first job leaves no W&B files.
    """
    from replicate.config.infra import build

    logger_cfg = cfg.get("logger")
    if not logger_cfg or "_target_" not in logger_cfg:
        return None
    logger = build(logger_cfg)   # a bad logger.mode reaches the CLI as a typed error (exit 2)
    logger.echo = echo
    return logger


def publish_suite(store: Any, suite_id: str, results_dir: str, logger: Optional[Any],
                  echo: Callable[[str], None]) -> tuple[Optional[Path], Optional[str]]:
    """At suite end: write the HTML report, then log the leaderboard (and the report) to the logger.

    Neither step can fail the suite: the store already holds every result, so a failure is
    reported in one line and the suite's verdicts stand.

    Returns:
        The report's index.html (None if none was written) and the logger's where-line (None
        without a logger).
    """
    report = None
    try:
        from replicate.report import write_report
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("replicate.report"):
            raise
        write_report = None   # the HTML report is not part of this build
    if write_report is not None:
        try:
            report = write_report(store, suite_id, Path(results_dir) / "reports" / suite_id)
        except Exception as exc:   # noqa: BLE001 - a report failure must not fail the suite
            echo(f"report: failed ({type(exc).__name__}: {exc}); the store has every result")
    if logger is None:
        return report, None
    try:
        from replicate.leaderboard import leaderboard_rows

        rows = leaderboard_rows(store, suite_id)
    except Exception as exc:   # noqa: BLE001 - as above: the leaderboard is a view of the store
        echo(f"leaderboard: failed ({type(exc).__name__}: {exc}); the store has every result")
        return report, logger.where()
    logger.log_suite(suite_id, rows, report.parent if report is not None else None)
    return report, logger.where()
