"""The static HTML report of a suite: a leaderboard index and one page per model.

``write_report(store, suite_id, out_dir)`` reads everything from the results store, draws the
plots as PNG files next to the pages and renders the Jinja2 templates in ``templates/`` with
autoescaping on. The pages link their plots relatively and need no server and no JavaScript.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from replicate.config.schema import Direction
from replicate.defects import defect_of
from replicate.formatting import duration, money, price_note, priced
from replicate.history import (
    Drift,
    Point,
    Regression,
    detect_drift,
    directions_of,
    find_regressions,
    is_failure,
    key_label,
    metric_series,
    series_key,
)
from replicate.jobs import PASS
from replicate.leaderboard import check_suite, cost_summary, leaderboard_rows
from replicate.report import safe_name
from replicate.report.plots import Drawing, draw_all
from replicate.report.power import write_power_page

TEMPLATES = Path(__file__).resolve().parent / "templates"
INDEX = "index.html"
DASH = "–"   # a missing value on a page (the terminal tables print "-")


def write_report(store: Any, suite_id: str, out_dir: Path,
                 found: Optional[tuple[list[Regression], list[Drift]]] = None) -> Path:
    """Write the report of ``suite_id`` into ``out_dir`` and return the path of its index.html.

    Args:
        store: a :class:`replicate.store.results_store.ResultStore`.
        suite_id: a suite recorded in the store.
        out_dir: created if missing; existing report files are overwritten.

    Raises:
        UnknownSuite: the store has no suite ``suite_id`` (a UserInputError: exit 2).
    """
    check_suite(store, suite_id)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = collect(store, suite_id, found)
    env = _environment()
    pages = []
    drawings: list[Drawing] = []
    for model in data["models"]:
        page = _model_page(data, model, out_dir, drawings)
        (out_dir / page["file"]).write_text(env.get_template("model.html").render(**page, suite_id=suite_id,
                                                                                   generated=data["generated"]),
                                            encoding="utf-8")
        pages.append(page)
    draw_all(drawings)
    # The selftest's "benchmark power" page, when this suite has selftest rows (replicate/report/power.py).
    power_page = write_power_page(store, suite_id, out_dir, env, data["generated"])
    index = out_dir / INDEX
    index.write_text(env.get_template("index.html").render(
        suite_id=suite_id, suite=data["suite"], generated=data["generated"], rows=data["rows"],
        costs=data["costs"], price_note=data["price_note"], regressions=data["regressions"], drifts=data["drifts"],
        pages={p["model"]: p["file"] for p in pages}, power_page=power_page), encoding="utf-8")
    return index


# Reading the store ---------------------------------------------------------------------------


def findings(store: Any, suite_id: str, every: Optional[Sequence[Mapping[str, Any]]] = None,
             jobs: Optional[list[dict[str, Any]]] = None) -> tuple[list[Regression], list[Drift]]:
    """The regressions of ``suite_id`` (each with what changed since its last PASS) and the drifts
    of its groups: what the report shows and the alerts tell (one computation for both)."""
    history = _history_until(store.group_history() if every is None else every, suite_id)
    jobs = store.jobs(suite_id=suite_id) if jobs is None else jobs
    return _findings(store, suite_id, history, jobs, metric_series(history))


def _findings(store: Any, suite_id: str, history: Sequence[Mapping[str, Any]], jobs: list[dict[str, Any]],
              series: Mapping[tuple, list[Point]]) -> tuple[list[Regression], list[Drift]]:
    # First find the regressions, then read only the jobs of their last-PASS suites to diff.
    before = {r.last_pass_suite_id for r in find_regressions(history, suite_id)}
    jobs_before = [job for other in sorted(before) for job in store.jobs(suite_id=other)]
    regressions = find_regressions(history, suite_id, [*jobs_before, *jobs])
    directions = directions_of(history)
    current = {series_key(g) for g in history if g["suite_id"] == suite_id}
    drift_list = [d for key in sorted(current)
                  if (d := detect_drift(key, series[key], directions.get(key, Direction.HIGHER))) is not None]
    return regressions, drift_list


def collect(store: Any, suite_id: str,
            found: Optional[tuple[list[Regression], list[Drift]]] = None) -> dict[str, Any]:
    """Everything the pages show, as plain data (history up to and including ``suite_id``);
    ``found``: the suite's :func:`findings` when the caller has them already (the suite's end)."""
    every = store.group_history()
    history = _history_until(every, suite_id)
    jobs = store.jobs(suite_id=suite_id)
    series = metric_series(history)
    regressions, drift_list = found if found is not None else _findings(store, suite_id, history, jobs, series)
    rows = leaderboard_rows(store, suite_id, jobs=jobs, history=every)
    suite = next((s for s in store.suites() if s["suite_id"] == suite_id), {"suite_id": suite_id})
    costs = cost_summary(store, suite_id)
    return {"suite": suite, "rows": rows, "costs": costs, "price_note": price_note([*rows, costs]), "jobs": jobs,
            "series": series, "regressions": regressions, "drifts": drift_list,
            "models": sorted({r["model"] for r in rows}),
            "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def _history_until(history: Sequence[Mapping[str, Any]], suite_id: str) -> list[Mapping[str, Any]]:
    """The group rows of the suites up to ``suite_id`` (history is oldest suite first): a report
    of an older suite must not show later nights."""
    order = list(dict.fromkeys(g["suite_id"] for g in history))
    if suite_id not in order:
        return []
    keep = set(order[: order.index(suite_id) + 1])
    return [g for g in history if g["suite_id"] in keep]


# Pages ---------------------------------------------------------------------------------------


def _model_page(data: Mapping[str, Any], model: str, out_dir: Path, drawings: list[Drawing]) -> dict[str, Any]:
    """Context of one model's page; adds the plots it links (into ``out_dir``) to ``drawings``."""
    from replicate.report import plots

    groups = []
    jobs_by_key: dict[tuple, list] = defaultdict(list)
    for job in data["jobs"]:
        if defect_of(job) is None:   # injected jobs are no group's: the power page shows them
            jobs_by_key[series_key(job)].append(job)
    for row in (r for r in data["rows"] if r["model"] == model):
        key = series_key(row)
        slug = safe_name(key_label(key).replace("/", "-"))
        points: list[Point] = data["series"].get(key, [])
        drift = next((d for d in data["drifts"] if d.key == key), None)
        regression = next((r for r in data["regressions"] if r.key == key), None)
        regressed = [p.suite_id for p in points if is_failure(p.verdict) and _passed_before(points, p.suite_id)]
        jobs = sorted(jobs_by_key.get(key, []), key=lambda j: j["seed"])
        curve_png, trend_png = f"{slug}-curves.png", f"{slug}-trend.png"
        drawings.append((plots.learning_curves, (out_dir / curve_png, jobs, row["metric_name"],
                                                  (row["band_low"], row["band_high"]),
                                                  f"{key_label(key)} - suite {data['suite']['suite_id']}"), {}))
        drawings.append((plots.trend, (out_dir / trend_png, points, row["metric_name"],
                                       f"{key_label(key)}: {row['metric_name']} over {len(points)} suite(s)"),
                         {"drift": drift, "regressed": regressed}))
        groups.append({"row": row, "label": key_label(key), "jobs": jobs, "points": points, "drift": drift,
                       "regression": regression, "curve_png": curve_png, "trend_png": trend_png,
                       "reference": plots.reference_curve(jobs[0]) if jobs else []})
    return {"model": model, "file": f"model-{safe_name(model)}.html", "groups": groups}


def _passed_before(points: Sequence[Point], suite_id: str) -> bool:
    for point in points:
        if point.suite_id == suite_id:
            return False
        if point.verdict == PASS:
            return True
    return False


# Rendering -----------------------------------------------------------------------------------


def _environment():
    """A Jinja2 environment over the packaged templates; autoescape on for every template."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(num=_num, signed=_signed, hours=_hours, duration=lambda s: duration(s, DASH),
                       money=lambda v: money(v, DASH), priced=lambda v, currency: priced(v, currency, DASH))
    return env


def _num(value: Optional[float], digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def _signed(value: Optional[float], digits: int = 3) -> str:
    return "–" if value is None else f"{value:+.{digits}g}"


def _hours(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.3g}"
