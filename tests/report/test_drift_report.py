"""Drift in the report: a slide inside the band over many nights is flagged on the index and on
the model's page, while every verdict stays PASS (so no regression is reported)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from replicate.report import write_report
from replicate.store.results_store import ResultStore

TARGET = {"kind": "reference", "metric": "bbox_AP", "value": 20.0, "tolerance": 0.25,
          "tolerance_kind": "relative", "direction": "higher", "source": "calibration, 3 seeds",
          "split": "val", "spread": 0.6, "low": 15.0, "high": 25.0}
GROUP = {"model": "retinanet", "variant": "small", "framework": "torch", "tier": "smoke", "hardware": "cpu"}
# Nine nights near 20, then four near 17.6: all PASS, each night like the one before.
MEANS = [20.1, 19.8, 20.3, 19.9, 20.0, 20.2, 19.7, 20.1, 19.9, 17.7, 17.5, 17.8, 17.4]
START = datetime(2026, 11, 1, 2, 0, tzinfo=timezone.utc)


def _night(store: ResultStore, day: int, mean: float) -> str:
    suite_id = f"smoke-202611{day + 1:02d}"
    store.upsert_suite(suite_id, "smoke", {})
    curve = [{"step": s, "train_s": s * 0.1, "loss": 2.0 - s / 500} for s in range(10, 801, 10)]
    curve += [{"step": 200, "train_s": 20.0, "bbox_AP": 2.1}, {"step": 800, "train_s": 80.0, "bbox_AP": mean}]
    store.save_job({**GROUP, "job_id": f"{suite_id}-retinanet-s0", "suite_id": suite_id, "seed": 0,
                    "verdict": "PASS", "metric_name": "bbox_AP", "metric_value": mean, "metrics": {"bbox_AP": mean},
                    "compared_with": TARGET, "curve": curve, "steps_done": 800, "steps_planned": 800,
                    "wall_s": 90.0, "train_s": 80.0, "created_at": START + timedelta(days=day),
                    "environment": {"python": "3.11.7", "torch": "2.14.1", "ray": "2.60.0"},
                    "config": {"tier": {"name": "smoke", "schedule_fraction": 1.0},
                               "model": {"tiers": {"smoke": {"reference": {"value": 20.0,
                                                                           "curve": {"0.25": 2.066}}}}}}})
    store.save_group({**GROUP, "suite_id": suite_id, "seeds": [0], "metric_name": "bbox_AP", "mean": mean,
                      "std": None, "verdict": "PASS", "compared_with": TARGET})
    return suite_id


def test_a_slide_within_the_band_is_flagged_as_drift_not_as_regression(tmp_path):
    with ResultStore(f"sqlite:///{tmp_path / 'zoo.db'}") as store:
        suites = [_night(store, day, mean) for day, mean in enumerate(MEANS)]
        index = write_report(store, suites[-1], tmp_path / "report")
    page = index.read_text(encoding="utf-8")
    assert "Drift (1)" in page and "Regressions (0)" in page
    assert f"worse by -2.4 since {suites[9]} (4 suites" in page
    model = (index.parent / "model-retinanet.html").read_text(encoding="utf-8")
    assert "DRIFT worse" in model and model.count('class="verdict v-PASS"') >= len(MEANS)
    assert (index.parent / "retinanet-small-torch-smoke-cpu-trend.png").stat().st_size > 10_000


def test_an_error_without_a_metric_or_curve_still_renders(tmp_path):
    # A model with a config but no implementation: ERROR, no mean, no curve, no cost.
    with ResultStore(f"sqlite:///{tmp_path / 'zoo.db'}") as store:
        first = _night(store, 0, 20.0)
        store.upsert_suite("smoke-20261102", "smoke", {})
        failure = {"failure_stage": "modeling", "failure_impact": "incorrect functionality"}
        store.save_job({**GROUP, **failure, "job_id": "broken-s0", "suite_id": "smoke-20261102", "seed": 0,
                        "verdict": "ERROR", "failure_message": "no registered implementation <retinanet>",
                        "compared_with": TARGET})
        store.save_group({**GROUP, **failure, "suite_id": "smoke-20261102", "seeds": [0], "metric_name": "bbox_AP",
                          "mean": None, "std": None, "verdict": "ERROR", "compared_with": TARGET,
                          "message": "no registered implementation <retinanet>"})
        index = write_report(store, "smoke-20261102", tmp_path / "report")
    page = index.read_text(encoding="utf-8")
    assert "Regressions (1)" in page and f"PASS in {first}" in page
    # The broken job never started: no environment or config to diff, and none invented.
    assert "Not recorded, so not compared: environment of job broken-s0; config of job broken-s0" in page
    assert 'class="change"' not in page and "Nothing recorded changed" not in page
    model = (index.parent / "model-retinanet.html").read_text(encoding="utf-8")
    assert "no registered implementation &lt;retinanet&gt;" in model and "<retinanet>" not in model
