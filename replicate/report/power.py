"""The report's "benchmark power" page: what ``replicate selftest`` found for a suite, one row per
injected defect (where it was caught, its verdict, at what share of a run's cost) and one per
clean control. Written next to the index when the suite has selftest rows, linked from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from replicate.jobs import ABOVE, BELOW, EARLY_ABORT, ERROR, INFRA, MEASURED, OFF_CURVE, PASS
from replicate.power import CONTROL, DEFECT, PREFLIGHT, summarize

POWER_PAGE = "power.html"
# The defect x verdict table's columns, in the order a run reaches them; "pre-flight" is the
# check that caught a defect before any training.
OUTCOMES = (PREFLIGHT, EARLY_ABORT, BELOW, ABOVE, OFF_CURVE, ERROR, PASS, MEASURED, INFRA)


def _why(name: Optional[str]) -> str:
    """The catalogue's word on what a reengineer got wrong ("" for a defect no longer in it)."""
    from replicate.defects import get_defect
    from replicate.errors import ConfigError

    try:
        return get_defect(name).why if name else ""
    except ConfigError:
        return ""


def power_context(store: Any, suite_id: str) -> Optional[dict[str, Any]]:
    """The page's data, or None when the suite has no selftest rows."""
    rows = store.selftest_rows(suite_id)
    if not rows:
        return None
    entries = []
    for row in rows:
        job = (store.get_job(row["job_id"]) if row.get("job_id") else None) or {}
        outcome = PREFLIGHT if row.get("caught_at") == PREFLIGHT else (row.get("verdict") or "–")
        band = job.get("compared_with") or {}
        entries.append({**row, "outcome": outcome, "why": _why(row.get("defect")),
                        "metric_name": job.get("metric_name"), "metric_value": job.get("metric_value"),
                        "band_low": band.get("low"), "band_high": band.get("high"), "wall_s": job.get("wall_s")})
    return {"defects": [e for e in entries if e["role"] == DEFECT],
            "controls": [e for e in entries if e["role"] == CONTROL],
            "summary": summarize(rows), "outcomes": OUTCOMES}


def write_power_page(store: Any, suite_id: str, out_dir: Path, env: Any, generated: str) -> Optional[str]:
    """Write ``power.html`` into ``out_dir`` if the suite has selftest rows; its file name, else None."""
    context = power_context(store, suite_id)
    if context is None:
        return None
    html = env.get_template(POWER_PAGE).render(**context, suite_id=suite_id, generated=generated)
    (Path(out_dir) / POWER_PAGE).write_text(html, encoding="utf-8")
    return POWER_PAGE
