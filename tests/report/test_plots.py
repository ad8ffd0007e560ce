"""The report's plots: a long history stays readable, and drawing changes no global matplotlib state."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

from replicate.history import Point
from replicate.report import plots

NIGHTS = [f"smoke-2026{1 + day // 28:02d}{1 + day % 28:02d}" for day in range(60)]   # two months of nights


def _points(suite_ids: list[str]) -> list[Point]:
    return [Point(suite_id=s, created_at=None, mean=20.0 + 0.01 * i, std=0.3, verdict="PASS", band_low=15.0,
                  band_high=25.0, seeds=[0, 1], target=20.0, spread=0.3) for i, s in enumerate(suite_ids)]


def test_a_long_trend_labels_at_most_a_dozen_suites_including_the_latest(tmp_path):
    fig = plots.trend_figure(_points(NIGHTS), "bbox_AP", "retinanet over 60 suites")
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert 2 <= len(labels) <= plots.MAX_SUITE_TICKS and labels[-1] == NIGHTS[-1]
    assert set(labels) <= set(NIGHTS)
    short = [t.get_text() for t in plots.trend_figure(_points(NIGHTS[:5]), "bbox_AP", "t").axes[0].get_xticklabels()]
    assert short == NIGHTS[:5]                                      # a few suites: every one labelled
    plots.trend(tmp_path / "trend.png", _points(NIGHTS), "bbox_AP", "t")
    assert (tmp_path / "trend.png").stat().st_size > 10_000


SCRIPT = """
import sys, matplotlib
matplotlib.use("svg")                       # the caller's choice, which a report must not change
from replicate.history import Point
from replicate.report import plots
point = Point(suite_id="n1", created_at=None, mean=1.0, std=0.1, verdict="PASS", band_low=0.5, band_high=1.5,
              seeds=[0], target=1.0, spread=None)
plots.trend(sys.argv[1] + "/trend.png", [point], "loss", "t")
job = {"seed": 0, "verdict": "PASS", "steps_planned": 4, "curve": [{"step": 2, "loss": 1.0}, {"step": 4, "loss": 0.5}]}
plots.learning_curves(sys.argv[1] + "/curves.png", [job], "loss", (0.4, 0.6), "t")
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""


def test_drawing_leaves_the_process_backend_alone_and_never_imports_pyplot(tmp_path):
    # A fresh interpreter: the backend of this test session is whatever earlier tests left.
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["svg", "False"]
    assert (tmp_path / "trend.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_jobs_reference_curve_is_its_frameworks_own_when_recorded():
    from replicate.report.plots import reference_curve

    tier = {"reference": {"curve": {"0.25": 1.0}, "value": 4.0},
            "framework_references": {"tensorflow": {"curve": {"0.25": 2.0}, "value": 5.0}}}
    config = {"tier": {"name": "smoke", "schedule_fraction": 1.0}, "model": {"tiers": {"smoke": tier}}}
    torch_job = {"config": config, "framework": "torch", "steps_planned": 100}
    tf_job = {"config": config, "framework": "tensorflow", "steps_planned": 100}
    assert reference_curve(torch_job) == [(25.0, 1.0), (100.0, 4.0)]
    assert reference_curve(tf_job) == [(25.0, 2.0), (100.0, 5.0)]


DRAW_ALL = """
import sys, threading
from pathlib import Path
from replicate.report.plots import draw_all, learning_curves

out = Path(sys.argv[1])
jobs = [{"seed": s, "verdict": "PASS", "steps_planned": 4,
         "curve": [{"step": i, "loss": 1.0 / (i + s), "bbox_AP": 0.1 * i} for i in range(1, 5)]} for s in (1, 2)]
for mode, processes in (("forked", 2), ("here", 1)):
    (out / mode).mkdir()
    drawings = [(learning_curves, (out / mode / f"{n}.png", jobs, "bbox_AP", (0.2, 0.5), f"figure {n}"), {})
                for n in range(5)]
    draw_all(drawings, processes=processes)
print(threading.active_count())
"""


def test_drawings_made_in_worker_processes_are_the_ones_made_here(tmp_path):
    """The report draws its figures in forked workers on a multi-core machine: byte for byte the
    PNGs one process draws."""
    done = subprocess.run([sys.executable, "-c", DRAW_ALL, str(tmp_path)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    forked = sorted(p.name for p in (tmp_path / "forked").iterdir())
    assert forked == [f"{n}.png" for n in range(5)]
    for name in forked:
        assert (tmp_path / "forked" / name).read_bytes() == (tmp_path / "here" / name).read_bytes()


def test_the_trend_draws_the_claim_it_was_judged_against_and_a_failing_night_keeps_its_point():
    points = [dataclasses.replace(p, target_kind="claim", target=37.0) for p in _points(NIGHTS[:4])]
    points[-1] = dataclasses.replace(points[-1], verdict="BELOW", mean=30.0)   # the failing night keeps its value
    ax = plots.trend_figure(points, "bbox_AP", "faster_rcnn").axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert "claim" in labels and "band" in labels
    (claim,) = [line for line in ax.get_lines() if line.get_label() == "claim"]
    assert set(claim.get_ydata()) == {37.0}
    plotted = [y for line in ax.get_lines() if line.get_label() != "claim" for y in line.get_ydata()]
    assert 30.0 in plotted
    reference = plots.trend_figure(_points(NIGHTS[:2]), "bbox_AP", "smoke").axes[0]
    assert "reference" in reference.get_legend_handles_labels()[1]
