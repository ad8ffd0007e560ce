"""Reports of a suite: the static HTML report (``pages``) with its plots (``plots``).

``write_report(store, suite_id, out_dir)`` is the entry point the harness and ``replicate report``
call; it is imported lazily so that importing this package stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_report(store: Any, suite_id: str, out_dir: Path) -> Path:
    """Write the HTML report of ``suite_id``; see :func:`replicate.report.pages.write_report`."""
    from replicate.report.pages import write_report as _write

    return _write(store, suite_id, out_dir)
