"""Reports of a suite: the static HTML report (``pages``) with its plots (``plots``).

``write_report(store, suite_id, out_dir)`` is the entry point the harness and ``replicate report``
call, both into :func:`default_report_dir` unless told otherwise; pages and plots are imported
lazily so that importing this package stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from replicate.paths import path_component


def safe_name(name: str, what: str = "name") -> str:
    """``name`` usable as a file name (replicate/paths.py; registry names and suite ids already are)."""
    return path_component(name, what)


def default_report_dir(results_dir: str | Path, suite_id: str) -> Path:
    """Where a suite's report lands by default: ``<results_dir>/reports/<suite_id>/`` (the id made
    safe as a folder name)."""
    return Path(results_dir) / "reports" / safe_name(suite_id, "suite id")


def write_report(store: Any, suite_id: str, out_dir: Path, found: Any = None) -> Path:
    """Write the HTML report of ``suite_id``; see :func:`replicate.report.pages.write_report`."""
    from replicate.report.pages import write_report as _write

    return _write(store, suite_id, out_dir, found)
