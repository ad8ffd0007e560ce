"""Selftest rows in the store: saved, read back, replaced by a re-run, validated; the migration
that creates them also renders for PostgreSQL."""

from __future__ import annotations

import io

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect

from replicate.store.results_store import ResultStore, _alembic_config

ROWS = [
    {"role": "control", "defect": None, "model": "yolov4", "framework": "torch", "job_id": "yolov4-smoke-s1000-a",
     "verdict": "PASS", "flagged": False, "caught_at": None, "cost_share": None,
     "preflight": {"ok": True, "failed": [], "seconds": 4.2}},
    {"role": "defect", "defect": "lr_10x", "model": "yolov4", "framework": "torch", "stage": "training",
     "defect_type": "hyperparameter", "description": "learning rate 10x the recipe's",
     "job_id": "yolov4-smoke-s1000-lr_10x-b", "verdict": "EARLY_ABORT", "flagged": True, "caught_at": "25% check",
     "cost_share": 0.27, "preflight": {"ok": True, "failed": [], "seconds": 4.0, "caught_by": []}},
    {"role": "defect", "defect": "box_regression_loss_dropped", "model": "faster_rcnn", "framework": "torch",
     "stage": "training", "defect_type": "training procedure", "job_id": None, "verdict": None, "flagged": True,
     "caught_at": "pre-flight", "cost_share": 0.04,
     "preflight": {"ok": False, "failed": ["gradients"], "seconds": 5.0, "caught_by": ["gradients"]}},
]


@pytest.fixture
def store(tmp_path):
    with ResultStore(f"sqlite:///{tmp_path / 'zoo.db'}") as opened:
        yield opened


def test_rows_round_trip_in_order_per_suite(store):
    store.save_selftest("selftest-1", ROWS)
    store.save_selftest("selftest-2", ROWS[:1])
    rows = store.selftest_rows("selftest-1")
    assert [r["defect"] for r in rows] == [None, "lr_10x", "box_regression_loss_dropped"]
    for saved, given in zip(rows, ROWS):
        assert {k: saved[k] for k in given} == given
        assert saved["suite_id"] == "selftest-1" and saved["created_at"]
    assert rows[0]["flagged"] is False and rows[2]["flagged"] is True
    assert len(store.selftest_rows("selftest-2")) == 1 and store.selftest_rows("nothing") == []


def test_a_rerun_replaces_the_rows_of_its_defects_and_keeps_the_others(store):
    store.save_selftest("selftest-1", ROWS)
    again = {**store.selftest_rows("selftest-1")[1], "verdict": "BELOW", "caught_at": "final verdict"}
    store.save_selftest("selftest-1", [again, {**ROWS[0], "model": "yolov3"}])   # rows read back save again
    rows = store.selftest_rows("selftest-1")
    assert [(r["defect"], r["model"]) for r in rows] == [
        (None, "yolov4"), ("box_regression_loss_dropped", "faster_rcnn"), ("lr_10x", "yolov4"), (None, "yolov3")]
    assert rows[2]["verdict"] == "BELOW"


@pytest.mark.parametrize("bad, match", [({"no_such": 1}, "no_such"), ({"model": None}, "model"),
                                        ({"cost_share": "x"}, "cost_share")])
def test_invalid_rows_are_refused_and_nothing_is_replaced(store, bad, match):
    store.save_selftest("selftest-1", ROWS)
    with pytest.raises(ValueError, match=match):
        store.save_selftest("selftest-1", [{**ROWS[1], **bad}])
    assert len(store.selftest_rows("selftest-1")) == 3


def test_the_migration_indexes_the_suite_and_renders_for_postgresql(store, tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'zoo.db'}")
    columns = {c["name"] for c in inspect(engine).get_columns("selftest_rows")}
    assert {"suite_id", "role", "defect", "verdict", "flagged", "caught_at", "cost_share", "preflight"} <= columns
    config = _alembic_config()
    config.set_main_option("sqlalchemy.url", "postgresql+psycopg://zoo@db/zoo")
    config.output_buffer = io.StringIO()
    command.upgrade(config, "0001:0002", sql=True)   # offline: the SQL PostgreSQL would run
    sql = config.output_buffer.getvalue()
    assert "CREATE TABLE selftest_rows" in sql and "flagged BOOLEAN NOT NULL" in sql
    assert "CREATE INDEX ix_selftest_rows_suite_id" in sql
