"""Leaderboard rows and the cost view, computed from a real SQLite store."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from replicate.jobs import PASS
from replicate.leaderboard import (
    LEADERBOARD_KEYS,
    UnknownSuite,
    cost_summary,
    leaderboard_rows,
    model_costs,
)
from replicate.store.results_store import ResultStore

TARGET = {"kind": "claim", "metric": "bbox_AP", "value": 0.40, "tolerance": 0.02, "tolerance_kind": "relative",
          "direction": "higher", "source": "paper, Table 1", "split": "val", "spread": None,
          "low": 0.392, "high": 0.408}
START = datetime(2026, 11, 20, tzinfo=timezone.utc)


def _job(suite_id, model, seed, verdict="PASS", value=0.40, **extra):
    record = {"job_id": f"{suite_id}-{model}-s{seed}", "suite_id": suite_id, "model": model, "variant": "full",
              "framework": "torch", "tier": "smoke", "hardware": "cpu", "seed": seed, "verdict": verdict,
              "metric_name": "bbox_AP", "metric_value": value, "compared_with": TARGET, "wall_s": 100.0,
              "accelerator_hours": 0.5, "cost": 2.0, "lost_s": 0.0, "time_to_quality_s": 60.0}
    record.update(extra)
    return record


def _group(suite_id, model, seeds, verdict="PASS", mean=0.40, std=None):
    return {"suite_id": suite_id, "model": model, "variant": "full", "framework": "torch", "tier": "smoke",
            "hardware": "cpu", "seeds": seeds, "metric_name": "bbox_AP", "mean": mean, "std": std,
            "verdict": verdict, "compared_with": TARGET,
            "failure_stage": None if verdict == PASS else "training",
            "failure_impact": None if verdict == PASS else "accuracy below expectations"}


def _suite(store, suite_id, day, jobs, groups):
    store.upsert_suite(suite_id, "smoke", {})
    for job in jobs:
        store.save_job({**job, "created_at": START + timedelta(days=day)})
    for group in groups:
        store.save_group(group)


@pytest.fixture
def store(tmp_path):
    # Suites are ordered by their created_at, stamped when each is first recorded below.
    store = ResultStore(f"sqlite:///{tmp_path / 'zoo.db'}")
    _suite(store, "night1", 0, [_job("night1", "yolov3", 0, value=0.40)], [_group("night1", "yolov3", [0], mean=0.40)])
    _suite(store, "night2", 1,
           [_job("night2", "yolov3", 0, value=0.41, lost_s=30.0), _job("night2", "yolov3", 1, value=0.39,
                                                                     time_to_quality_s=None),
            _job("night2", "pix2pix", 0, verdict="EARLY_ABORT", value=None, time_to_quality_s=None,
                 early_check={"aborted": True, "saved_cost": 6.5, "saved_accelerator_hours": 1.5})],
           [_group("night2", "yolov3", [0, 1], mean=0.40, std=0.0141),
            _group("night2", "pix2pix", [0], verdict="EARLY_ABORT", mean=None)])
    _suite(store, "night3", 2, [_job("night3", "yolov3", 0, verdict="BELOW", value=0.30)],
           [_group("night3", "yolov3", [0], verdict="BELOW", mean=0.30)])
    store.save_job(_job("adhoc", "yolov3", 7) | {"suite_id": None, "job_id": "adhoc-run"})
    yield store
    store.close()


def test_rows_have_exactly_the_leaderboard_keys_and_sum_the_group_jobs(store):
    rows = {r["model"]: r for r in leaderboard_rows(store, "night2")}
    assert set(rows) == {"yolov3", "pix2pix"}
    assert all(list(r) == list(LEADERBOARD_KEYS) for r in rows.values())
    yolo = rows["yolov3"]
    assert yolo["seeds"] == [0, 1] and yolo["std"] == pytest.approx(0.0141)
    assert yolo["target_value"] == 0.40 and yolo["target_source"] == "paper, Table 1"
    assert (yolo["target_kind"], yolo["target_label"]) == ("claim", "claim (paper/zoo)")
    assert (yolo["band_low"], yolo["band_high"], yolo["direction"]) == (0.392, 0.408, "higher")
    assert yolo["cost"] == pytest.approx(4.0) and yolo["accelerator_hours"] == pytest.approx(1.0)
    assert yolo["wall_s"] == pytest.approx(200.0) and yolo["lost_s"] == pytest.approx(30.0)
    assert yolo["time_to_quality_s"] == pytest.approx(60.0)   # the one seed that reached the band
    assert yolo["delta"] == pytest.approx(0.0) and yolo["delta_pct"] == pytest.approx(0.0)
    abort = rows["pix2pix"]
    assert abort["verdict"] == "EARLY_ABORT" and abort["mean"] is None and abort["delta"] is None
    assert abort["early_abort_saved_cost"] == pytest.approx(6.5) and abort["time_to_quality_s"] is None
    assert abort["failure_stage"] == "training"


def test_trend_compares_with_the_latest_earlier_suite_of_the_same_group(store):
    (row,) = leaderboard_rows(store, "night3")
    assert row["previous_suite_id"] == "night2" and row["previous_verdict"] == "PASS"
    assert row["previous_mean"] == pytest.approx(0.40) and row["trend"] == pytest.approx(-0.10)
    assert row["delta"] == pytest.approx(-0.10) and row["delta_pct"] == pytest.approx(-25.0)
    first = {r["model"]: r for r in leaderboard_rows(store, "night1")}["yolov3"]
    assert first["previous_suite_id"] is None and first["trend"] is None
    # pix2pix first appears in night2: no previous night to compare with.
    assert {r["model"]: r for r in leaderboard_rows(store, "night2")}["pix2pix"]["previous_suite_id"] is None


def test_cost_summary_per_suite_counts_passes_and_savings(store):
    night2 = cost_summary(store, "night2")
    assert night2["cost"] == pytest.approx(6.0) and night2["accelerator_hours"] == pytest.approx(1.5)
    assert night2["early_abort_saved_cost"] == pytest.approx(6.5) and night2["lost_s"] == pytest.approx(30.0)
    assert night2["passes"] == 1 and night2["cost_per_pass"] == pytest.approx(6.0)
    night3 = cost_summary(store, "night3")
    assert night3["passes"] == 0 and night3["cost_per_pass"] is None


def test_model_costs_over_history_include_runs_outside_suites(store):
    rows = {r["model"]: r for r in model_costs(store)}
    yolo = rows["yolov3"]
    assert yolo["jobs"] == 5 and yolo["suites"] == 3
    assert yolo["cost"] == pytest.approx(10.0)
    assert yolo["passes"] == 3          # night1, night2 and the ad-hoc run
    assert yolo["cost_per_pass"] == pytest.approx(10.0 / 3)
    assert rows["pix2pix"]["passes"] == 0 and rows["pix2pix"]["cost_per_pass"] is None
    one = {r["model"]: r for r in model_costs(store, "night3")}
    assert set(one) == {"yolov3"} and one["yolov3"]["cost"] == pytest.approx(2.0)


def test_unknown_suite_is_user_input_naming_it(store):
    with pytest.raises(UnknownSuite, match="nope") as err:
        leaderboard_rows(store, "nope")
    assert err.value.exit_code == 2
    with pytest.raises(UnknownSuite):
        cost_summary(store, "nope")


REFERENCE = {"kind": "reference", "metric": "bbox_AP", "value": 12.0, "tolerance": 0.2, "tolerance_kind": "relative",
             "direction": "higher", "source": "measured: replicate calibrate", "split": "val", "spread": 0.5,
             "low": 9.6, "high": 14.4}
NOTHING = {"kind": "none", "metric": "bbox_AP", "value": None, "tolerance": 0.0, "tolerance_kind": "relative",
           "direction": "higher", "source": "calibration run: nothing to compare with", "split": None,
           "spread": None, "low": None, "high": None}


def test_smoke_reference_rows_are_labelled_reference_and_measured_is_no_pass(tmp_path):
    with ResultStore(f"sqlite:///{tmp_path / 'zoo.db'}") as store:
        _suite(store, "night", 0,
               [_job("night", "yolov4", 0, value=12.0, compared_with=REFERENCE),
                _job("night", "pix2pix", 0, verdict="MEASURED", value=0.04, compared_with=NOTHING)],
               [_group("night", "yolov4", [0], mean=12.0) | {"compared_with": REFERENCE},
                _group("night", "pix2pix", [0], verdict="MEASURED", mean=0.04)
                | {"compared_with": NOTHING, "failure_stage": None, "failure_impact": None}])
        rows = {r["model"]: r for r in leaderboard_rows(store, "night")}
        summary = cost_summary(store, "night")
    assert rows["yolov4"]["target_label"] == "reference (this implementation)"
    assert "claim" not in rows["yolov4"]["target_label"]
    assert rows["pix2pix"]["target_label"] == "nothing to compare with" and rows["pix2pix"]["delta"] is None
    # The MEASURED group is counted apart and is not a PASS: cost per PASS is over the one PASS.
    assert (summary["passes"], summary["measured"]) == (1, 1)
    assert summary["cost_per_pass"] == pytest.approx(4.0)


def test_a_failing_group_keeps_its_value_and_a_night_that_measured_nothing_is_no_trend_baseline(tmp_path):
    """The leaderboard of a failing night still shows what was measured and how it moved; a night
    whose jobs all crashed (no mean) is skipped as the baseline, not read as a first run."""
    with ResultStore(f"sqlite:///{tmp_path / 'zoo.db'}") as store:
        _suite(store, "n1", 0, [_job("n1", "yolov3", 0, value=0.40)], [_group("n1", "yolov3", [0], mean=0.40)])
        _suite(store, "n2", 1, [_job("n2", "yolov3", 0, verdict="ERROR", value=None)],
               [_group("n2", "yolov3", [0], verdict="ERROR", mean=None)])
        _suite(store, "n3", 2, [_job("n3", "yolov3", 0, verdict="OFF_CURVE", value=0.38)],
               [_group("n3", "yolov3", [0], verdict="OFF_CURVE", mean=0.38)])
        (row,) = leaderboard_rows(store, "n3")
    assert row["verdict"] == "OFF_CURVE" and row["mean"] == pytest.approx(0.38)
    assert row["previous_suite_id"] == "n1" and row["trend"] == pytest.approx(-0.02)
    assert row["section"] == "against the paper" and (row["tolerance"], row["tolerance_kind"]) == (0.02, "relative")


def test_rows_carry_the_currency_and_price_source_their_jobs_recorded(tmp_path):
    hardware = {"name": "cpu", "currency": "EUR", "price_source": "lab rate 2026", "price_placeholder": False}
    with ResultStore(f"sqlite:///{tmp_path / 'zoo.db'}") as store:
        _suite(store, "n1", 0, [_job("n1", "yolov3", 0, config={"hardware": hardware}), _job("n1", "pix2pix", 0)],
               [_group("n1", "yolov3", [0]), _group("n1", "pix2pix", [0])])
        rows = {r["model"]: r for r in leaderboard_rows(store, "n1")}
        costs = cost_summary(store, "n1")
    assert (rows["yolov3"]["currency"], rows["yolov3"]["price_source"], rows["yolov3"]["price_placeholder"]) == \
        ("EUR", "lab rate 2026", False)
    assert rows["pix2pix"]["currency"] is None   # recorded before currencies: shown as "currency not recorded"
    assert costs["currency"] is None             # the suite's jobs disagree: no one currency to sum in
