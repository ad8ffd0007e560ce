"""Tests of the results store on real SQLite files: migrations, upserts, queries, errors."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from replicate.errors import ConfigError
from replicate.store.results_store import ResultStore, _alembic_config
from replicate.store.tables import Base

TABLES = {"suites", "jobs", "group_verdicts", "selftest_rows", "reference_runs"}
HEAD = "0005"   # the newest migration (replicate/store/migrations/versions)


def job(job_id: str = "j1", **overrides) -> dict:
    """A minimal valid job record; ``overrides`` replace or add columns."""
    record = {
        "job_id": job_id,
        "suite_id": "s1",
        "model": "faster_rcnn",
        "variant": "smoke",
        "framework": "torch",
        "tier": "smoke",
        "hardware": "cpu",
        "seed": 0,
        "verdict": "PASS",
    }
    record.update(overrides)
    return record


def group(**overrides) -> dict:
    """A minimal valid group-verdict record."""
    record = {
        "suite_id": "s1",
        "model": "faster_rcnn",
        "variant": "smoke",
        "framework": "torch",
        "tier": "smoke",
        "hardware": "cpu",
        "verdict": "PASS",
    }
    record.update(overrides)
    return record


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'zoo.db'}"


@pytest.fixture
def store(db_url):
    with ResultStore(db_url) as opened:
        yield opened


# Migrations -----------------------------------------------------------------------------------


def test_migrations_create_all_tables_on_a_fresh_file(tmp_path, db_url):
    assert not (tmp_path / "zoo.db").exists()
    ResultStore(db_url).close()
    tables = set(inspect(create_engine(db_url)).get_table_names())
    assert TABLES | {"alembic_version"} <= tables


def test_opening_twice_is_idempotent_and_keeps_data(db_url):
    with ResultStore(db_url) as first:
        first.save_job(job())
    with ResultStore(db_url, some_hydra_key="ignored") as second:
        assert second.get_job("j1")["model"] == "faster_rcnn"
    with create_engine(db_url).connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]


def test_orm_metadata_matches_migrations(store, db_url):
    with create_engine(db_url).connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_downgrade_to_base_drops_every_table(store, db_url):
    store.close()
    engine = create_engine(db_url)
    config = _alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
    assert not TABLES & set(inspect(engine).get_table_names())


def test_migrations_work_from_any_working_directory_and_create_the_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with ResultStore("sqlite:///results/zoo.db") as opened:     # results_dir, made in an existing folder
        opened.save_job(job())
    assert (tmp_path / "results" / "zoo.db").is_file()
    # A folder whose parent is missing is refused, never created with its parents.
    with pytest.raises(ConfigError, match="does not exist"):
        ResultStore("sqlite:///missing/nested/zoo.db")
    assert not (tmp_path / "missing").exists()


def test_in_memory_store_keeps_its_schema_across_connections():
    with ResultStore("sqlite://") as opened:
        opened.save_job(job())
        assert opened.get_job("j1") is not None


# URL errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["not a url", "nosuchdialect://host/db", "sqlite+nodriver:///x.db"])
def test_bad_url_raises_config_error_naming_store_url(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        ResultStore(url)
    assert info.value.key == "store.url"


def test_unopenable_sqlite_file_raises_config_error(tmp_path):
    (tmp_path / "a_dir.db").mkdir()
    with pytest.raises(ConfigError) as info:
        ResultStore(f"sqlite:///{tmp_path / 'a_dir.db'}")
    assert info.value.key == "store.url"


def _node(url: str):
    """The Hydra ``store`` node of ``url``, as a read-only command gets it."""
    from omegaconf import OmegaConf

    return OmegaConf.create({"_target_": "replicate.store.results_store.ResultStore", "url": url})


def test_open_existing_reads_a_store_and_never_creates_one(store, db_url, tmp_path):
    from replicate.store.results_store import open_existing

    store.upsert_suite("s1", "smoke", {})
    with open_existing(_node(db_url)) as reader:
        assert [s["suite_id"] for s in reader.suites()] == ["s1"]
    open_existing(_node("sqlite://")).close()                   # in memory: nothing to find or create
    missing = tmp_path / "nowhere" / "zoo.db"
    with pytest.raises(ConfigError, match=re.escape(f"store.url: no store at {missing}")):
        open_existing(_node(f"sqlite:///{missing}"))
    assert not missing.parent.exists()


def test_store_from_an_unknown_newer_revision_raises_config_error(store, db_url):
    store.close()
    with create_engine(db_url).begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(ConfigError, match="9999_future"):
        ResultStore(db_url)


# Jobs -----------------------------------------------------------------------------------------


def test_save_job_twice_updates_the_single_row(store, db_url):
    store.save_job(job(verdict="ERROR", failure_stage="training", failure_impact="numerical error"))
    first = store.get_job("j1")
    store.save_job(job(verdict="PASS", metric_name="bbox_AP", metric_value=0.37, wall_s=12.5))
    second = store.get_job("j1")
    with create_engine(db_url).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM jobs")).scalar() == 1
    assert (second["verdict"], second["metric_value"], second["wall_s"]) == ("PASS", 0.37, 12.5)
    # A re-run replaces the row: the earlier failure must not linger next to a PASS.
    assert second["failure_stage"] is None and second["failure_impact"] is None
    assert second["created_at"] == first["created_at"]
    assert second["updated_at"] > first["updated_at"]


def test_unknown_key_raises_value_error_naming_it(store):
    with pytest.raises(ValueError, match="no_such_column"):
        store.save_job(job(no_such_column=1))
    assert store.get_job("j1") is None


@pytest.mark.parametrize(
    "bad, match",
    [({"model": None}, "model"), ({"verdict": "MAYBE"}, "MAYBE"), ({"seed": "x"}, "seed"),
     ({"metrics": {"a": object()}}, "metrics"), ({"failure_stage": 3}, "failure_stage")],
)
def test_invalid_job_values_raise_value_error(store, bad, match):
    with pytest.raises(ValueError, match=match):
        store.save_job(job(**bad))


def test_omitted_columns_get_defaults(store):
    store.save_job(job())
    row = store.get_job("j1")
    assert row["metrics"] == {} and row["curve"] == [] and row["cost"] == 0.0
    assert row["throughput"] is None and row["restarts"] == 0 and row["config_hash"] == ""
    assert datetime.fromisoformat(row["created_at"]).tzinfo == timezone.utc


def test_finished_job_ids_excludes_infra_and_other_suites(store):
    store.save_job(job("pass"))
    store.save_job(job("below", verdict="BELOW"))
    store.save_job(job("error", verdict="ERROR"))
    store.save_job(job("infra", verdict="INFRA"))
    store.save_job(job("other", suite_id="s2"))
    store.save_job(job("adhoc", suite_id=None))
    assert store.finished_job_ids("s1") == {"pass", "below", "error"}
    assert store.finished_job_ids("nope") == set()


def test_jobs_filters_and_orders_newest_first(store):
    stamps = {
        "a": "2025-01-01T00:00:00+00:00",
        "b": "2025-01-03T00:00:00+00:00",
        "c": "2025-01-02T00:00:00+00:00",
        "d": "2025-01-02T00:00:00+00:00",   # same time as c: job_id breaks the tie
    }
    store.save_job(job("a", created_at=stamps["a"]))
    store.save_job(job("b", created_at=stamps["b"], model="yolov3"))
    store.save_job(job("c", created_at=stamps["c"], tier="full"))
    store.save_job(job("d", created_at=stamps["d"], suite_id="s2"))
    ids = lambda rows: [row["job_id"] for row in rows]  # noqa: E731
    assert ids(store.jobs()) == ["b", "d", "c", "a"]
    assert ids(store.jobs(limit=2)) == ["b", "d"]
    assert ids(store.jobs(model="faster_rcnn")) == ["d", "c", "a"]
    assert ids(store.jobs(suite_id="s1", tier="smoke")) == ["b", "a"]
    assert ids(store.jobs(suite_id="s1", tier="smoke", model="faster_rcnn")) == ["a"]
    assert ids(store.jobs(model="nope")) == []
    assert store.get_job("b")["created_at"] == stamps["b"]


def test_json_columns_round_trip_nested_values(store, db_url):
    nested = {"bbox": {"AP": 0.37, "per_class": [0.1, 0.2, None]}, "tags": ["a", {"b": [1, 2]}]}
    curve = [{"step": 0, "loss": 2.5}, {"step": 100, "loss": 1.25, "bbox_AP": 0.01}]
    claim = {"value": 37.0, "low": 36.26, "high": 37.74, "source": "torchvision COCO_V1"}
    store.save_job(job(metrics=nested, curve=curve, compared_with=claim, config={"x": (1, 2)}))
    row = store.get_job("j1")
    assert (row["metrics"], row["curve"], row["compared_with"]) == (nested, curve, claim)
    assert row["config"] == {"x": [1, 2]}   # JSON has no tuples
    store.save_job(job())   # compared_with omitted: stored as SQL NULL, not JSON 'null'
    with create_engine(db_url).connect() as conn:
        assert conn.execute(text("SELECT compared_with IS NULL FROM jobs")).scalar() == 1


# Suites and groups ----------------------------------------------------------------------------


def test_suites_upsert_finish_and_order(store):
    store.upsert_suite("s1", "smoke", {"models": ["a"]})
    store.upsert_suite("s2", "nightly", {})
    store.finish_suite("s1")
    assert store.suites()[0]["suite_id"] == "s2"
    s1 = store.suites()[1]
    assert s1["finished_at"] is not None and s1["config"] == {"models": ["a"]}
    store.upsert_suite("s1", "smoke", {"models": ["a", "b"]})   # a re-run reopens it
    s1 = [s for s in store.suites() if s["suite_id"] == "s1"][0]
    assert s1["finished_at"] is None and s1["config"] == {"models": ["a", "b"]}
    assert len(store.suites()) == 2 and len(store.suites(limit=1)) == 1
    with pytest.raises(ValueError, match="nope"):
        store.finish_suite("nope")


def test_save_group_upserts_on_its_key(store):
    store.save_group(group(seeds=[0, 1], mean=36.0, std=0.4, verdict="BELOW", message="low"))
    store.save_group(group(model="retinanet", seeds=[0]))
    store.save_group(group(suite_id="s2"))
    store.save_group(group(seeds=[0, 1, 2], mean=37.1, std=0.3, noise_note="tol < noise"))
    rows = store.groups("s1")
    assert [r["model"] for r in rows] == ["faster_rcnn", "retinanet"]
    first = rows[0]
    assert (first["seeds"], first["mean"], first["verdict"]) == ([0, 1, 2], 37.1, "PASS")
    assert first["message"] is None and first["noise_note"] == "tol < noise"
    store.save_group(first)   # a dict read back (with id, created_at) saves again
    assert store.groups("s1")[0] == first
    assert len(store.groups("s2")) == 1 and store.groups("nope") == []
    with pytest.raises(ValueError, match="bogus"):
        store.save_group(group(bogus=1))


def test_a_store_of_an_older_revision_gains_queue_time_and_attempts_and_keeps_its_jobs(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    config = _alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0002")
        conn.execute(text("INSERT INTO suites (suite_id, name, created_at, config) VALUES ('s1', 'n', "
                          "'2026-11-01 02:00:00', '{}')"))
        conn.execute(text("INSERT INTO jobs (job_id, suite_id, model, variant, framework, tier, hardware, seed, "
                          "verdict, metrics, curve, setup_s, train_s, eval_s, lost_s, wall_s, accelerator_hours, "
                          "cost, steps_done, steps_planned, restarts, early_check, lr_scaling, environment, config, "
                          "config_hash, created_at, updated_at) VALUES ('old', 's1', 'yolov4', 'tiny', 'torch', "
                          "'smoke', 'cpu', 0, 'PASS', '{}', '[]', 1, 2, 3, 0, 6, 0, 0, 4, 4, 0, '{}', '{}', '{}', "
                          "'{}', 'h', '2026-11-01 02:00:00', '2026-11-01 02:00:00')"))
    with ResultStore(url) as store:   # opening upgrades to the newest revision
        assert store.get_job("old")["queue_s"] is None   # not measured then
        assert store.get_job("old")["attempts"] is None and store.get_job("old")["retry_overhead_s"] is None
        store.save_job(job("new", queue_s=12.5))
        assert store.get_job("new")["queue_s"] == 12.5 and store.get_job("old")["wall_s"] == 6
