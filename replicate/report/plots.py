"""Plots of the HTML report (matplotlib): learning curves and metric trends.

Each plotting function writes one PNG and returns nothing; the caller links it relatively.
Figures are drawn on their own Agg canvas, never through pyplot: writing a report changes no
process-wide matplotlib state (the backend, pyplot's figure list), whoever calls it. matplotlib
is imported inside the functions so that importing the report package stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from replicate.history import Drift, Point

# MEASURED (nothing to compare with) is a neutral grey: neither the green of a PASS nor a failure's red.
VERDICT_COLOURS = {"PASS": "#1a7f37", "MEASURED": "#6e7781", "BELOW": "#cf222e", "ABOVE": "#bf8700",
                   "OFF_CURVE": "#bc4c00",
                   "EARLY_ABORT": "#8250df", "ERROR": "#cf222e", "INFRA": "#0969da"}
BAND_COLOUR = "#2da44e"
DPI = 100
# Fixed legend corner and margins: matplotlib's "best" legend placement and tight_layout scan
# every drawn point, which made a year of nightly points cost seconds per figure.
LEGEND = dict(fontsize=8, loc="upper left")
MARGINS = dict(left=0.07, right=0.98, top=0.88, bottom=0.22, wspace=0.2)
# A title at a fixed height: matplotlib otherwise lifts it clear of the axes' decorations, measuring
# every tick label of the axes at each draw (a fifth of a report's plotting time).
TITLE = dict(y=1.0)
# At most this many suite ids label a trend's x axis: a year of nightly suites stays readable.
MAX_SUITE_TICKS = 12


# A drawing to make: a plotting function of this module and its arguments.
Drawing = tuple[Callable[..., None], tuple[Any, ...], dict[str, Any]]


def draw_all(drawings: Sequence[Drawing], processes: Optional[int] = None) -> None:
    """Make every drawing; on a multi-core machine in forked worker processes (matplotlib draws on
    one core: a year-long report's 16 figures take most of its time). Forking is safe only in a
    process with no other threads (a suite's driver has Ray's): there the drawings run here."""
    import os
    import threading

    workers = min(len(drawings), processes or os.cpu_count() or 1)
    if workers < 2 or len(drawings) < 4 or threading.active_count() > 1:
        for function, args, kwargs in drawings:
            function(*args, **kwargs)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    _figure((1, 1))   # matplotlib and its font cache loaded once here, inherited by every worker
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        for done in [pool.submit(function, *args, **kwargs) for function, args, kwargs in drawings]:
            done.result()   # a drawing's error is raised here, as it would be in this process


def _figure(figsize: tuple[float, float]):
    """A figure on its own Agg canvas (no display, no pyplot, no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def suite_ticks(count: int, most: int = MAX_SUITE_TICKS) -> list[int]:
    """Which of ``count`` suites get an x tick label: every k-th (k so that at most ``most`` do),
    counted back from the latest, which is always labelled."""
    step = max(1, -(-count // most))
    return sorted(range(count - 1, -1, -step))


def reference_curve(job: Mapping[str, Any]) -> list[tuple[float, float]]:
    """The tier's recorded reference curve as ``(step, value)`` for ``job``'s schedule.

    The config stores ``{fraction of the full schedule: value}``; a tier running a fraction of it
    (``short``) ends at ``schedule_fraction``, so a point at fraction f sits at step
    ``f / schedule_fraction * steps_planned``. The reference's final value sits at the end.
    """
    config = job.get("config") or {}
    try:
        tier_name = config["tier"]["name"]
        tier = config["model"]["tiers"][tier_name]
        # the job's framework's own reference when it has one (config.selection.chosen_reference)
        reference = (tier.get("framework_references") or {}).get(job.get("framework")) or tier.get("reference") or {}
        fraction = float(config["tier"].get("schedule_fraction") or 1.0)
    except (KeyError, TypeError, AttributeError):
        return []
    steps = float(job.get("steps_planned") or 0)
    if not steps or not reference:
        return []
    points = [(float(f) / fraction * steps, float(v)) for f, v in (reference.get("curve") or {}).items()
              if v is not None and float(f) <= fraction]
    if reference.get("value") is not None and fraction >= 1.0:
        points.append((steps, float(reference["value"])))
    return sorted(points)


def learning_curves(path: Path, jobs: Sequence[Mapping[str, Any]], metric: Optional[str],
                    band: tuple[Optional[float], Optional[float]], title: str) -> None:
    """Loss (left) and the judged metric (right) against steps, one line per seed, with the
    reference curve and the band at the end of the schedule."""
    fig = _figure((10, 3.6))
    loss_ax, metric_ax = fig.subplots(1, 2)
    for job in sorted(jobs, key=lambda j: j["seed"]):
        curve = job.get("curve") or []
        losses = [(p["step"], p["loss"]) for p in curve if p.get("loss") is not None]
        values = [(p["step"], p[metric]) for p in curve if metric and p.get(metric) is not None]
        label = f"seed {job['seed']} ({job['verdict']})"
        if losses:
            loss_ax.plot(*zip(*losses), linewidth=1.2, label=label)
        if values:
            metric_ax.plot(*zip(*values), marker="o", linewidth=1.5, label=label)
    reference = reference_curve(jobs[0]) if jobs else []
    if reference:
        metric_ax.plot(*zip(*reference), linestyle="--", marker="s", color="black", label="reference")
    low, high = band
    end = max((float(j.get("steps_planned") or 0) for j in jobs), default=0.0)
    if low is not None and high is not None and end:
        metric_ax.fill_between([end * 0.9, end * 1.02], low, high, color=BAND_COLOUR, alpha=0.25,
                               label="band")
    loss_ax.set(xlabel="step", ylabel="loss")
    loss_ax.set_title("training loss", **TITLE)
    metric_ax.set(xlabel="step", ylabel=metric or "")
    metric_ax.set_title(f"{metric or 'metric'} vs reference", **TITLE)
    for ax in (loss_ax, metric_ax):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(**LEGEND)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(**MARGINS)
    fig.savefig(path)


def trend(path: Path, points: Sequence[Point], metric: Optional[str], title: str,
          drift: Optional[Drift] = None, regressed: Sequence[str] = ()) -> None:
    """Write :func:`trend_figure` as a PNG."""
    trend_figure(points, metric, title, drift=drift, regressed=regressed).savefig(path)


def trend_figure(points: Sequence[Point], metric: Optional[str], title: str, drift: Optional[Drift] = None,
                 regressed: Sequence[str] = ()):
    """The group's seed mean per suite (error bars: seed std), coloured by verdict, over the band
    each suite was judged against and its claim (or reference) as a dashed line; the drifted
    stretch is shaded, regressions circled. Only
    :func:`suite_ticks` suites are labelled."""
    fig = _figure((10, 3.6))
    ax = fig.subplots()
    xs = list(range(len(points)))
    lows = [p.band_low for p in points]
    highs = [p.band_high for p in points]
    if all(v is not None for v in lows + highs) and points:
        # Each suite's band spans its slot [x - 0.5, x + 0.5], so a single suite shows one too.
        edges = [e for x in xs for e in (x - 0.5, x + 0.5)]
        ax.fill_between(edges, [v for v in lows for _ in (0, 1)], [v for v in highs for _ in (0, 1)],
                        color=BAND_COLOUR, alpha=0.18, label="band")
    targets = [(x, p.target) for x, p in zip(xs, points) if p.target is not None]
    if targets:   # the number each suite was judged against: the paper's claim, or the reference
        claimed = any(p.target_kind == "claim" for p in points)
        ax.step([x for x, _ in targets], [v for _, v in targets], where="mid", color="#0969da", linewidth=1.2,
                linestyle="--", label="claim" if claimed else "reference")
    measured = [(x, p) for x, p in zip(xs, points) if p.mean is not None]
    if measured:
        ax.plot([x for x, _ in measured], [p.mean for _, p in measured], color="#57606a", linewidth=1)
    # One artist per verdict, not one per suite: a year of nights draws in a fraction of a second.
    for verdict in dict.fromkeys(p.verdict for _, p in measured):
        mine = [(x, p) for x, p in measured if p.verdict == verdict]
        ax.errorbar([x for x, _ in mine], [p.mean for _, p in mine], yerr=[p.std or 0.0 for _, p in mine],
                    fmt="o", color=VERDICT_COLOURS.get(verdict, "black"), capsize=3)
    circled = [(x, p.mean) for x, p in measured if p.suite_id in regressed]
    if circled:
        ax.plot(*zip(*circled), "o", markersize=16, markerfacecolor="none", markeredgecolor="#cf222e",
                markeredgewidth=2, linestyle="none")
    # ERROR / INFRA / EARLY_ABORT have no mean: their suites are marked with a dotted line instead
    for verdict in dict.fromkeys(p.verdict for p in points if p.mean is None):
        ax.vlines([x for x, p in zip(xs, points) if p.mean is None and p.verdict == verdict], 0, 1,
                  transform=ax.get_xaxis_transform(), colors=VERDICT_COLOURS.get(verdict, "black"),
                  linestyles=":", linewidth=1.5)
    if drift is not None:
        start = next(i for i, p in enumerate(points) if p.suite_id == drift.since_suite_id)
        ax.axvspan(start - 0.5, len(points) - 0.5, color="#fb8500", alpha=0.12, label=f"drift ({drift.direction})")
        ax.axhline(drift.baseline_mean, color="#fb8500", linestyle="--", linewidth=1, label="baseline mean")
    ticks = suite_ticks(len(points))
    ax.set_xticks(ticks, [points[i].suite_id for i in ticks], rotation=30, ha="right", fontsize=8)
    ax.set(ylabel=metric or "metric")
    ax.set_title(title, **TITLE)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**LEGEND)
    fig.subplots_adjust(**MARGINS)
    return fig
