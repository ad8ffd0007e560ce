"""The store on a real PostgreSQL server (the cluster's shared store): round trips, a connection
the server drops mid-suite, the server down while a job finishes, and concurrent writers."""

from __future__ import annotations

import threading

import psycopg
import pytest
from sqlalchemy import make_url

from replicate.errors import StoreError
from replicate.harness import run_one
from replicate.store import spool
from replicate.store.results_store import ResultStore


def _job(job_id: str, seed: int = 0, verdict: str = "PASS") -> dict:
    return {"job_id": job_id, "suite_id": "s", "model": "m", "variant": "v", "framework": "torch", "tier": "smoke",
            "hardware": "cpu", "seed": seed, "verdict": verdict, "metrics": {"AP": 0.5 + seed},
            "curve": [{"step": 1, "loss": 2.0}], "environment": {"cpu_capability": "AVX512"}}


def test_jobs_groups_and_suites_round_trip(pg_url):
    with ResultStore(pg_url) as store:
        store.upsert_suite("s", "smoke", {"overrides": ["model=m"]})
        store.save_job(_job("j0"))
        store.save_job({**_job("j0"), "verdict": "BELOW"})   # a re-run replaces the row
        store.save_job(_job("j1", seed=1))
        store.finish_suite("s")
        assert [r["verdict"] for r in store.jobs(suite_id="s")] and store.get_job("j0")["verdict"] == "BELOW"
        assert store.get_job("j1")["metrics"] == {"AP": 1.5} and store.get_job("j1")["curve"][0]["loss"] == 2.0
        assert store.suites()[0]["finished_at"] is not None
        assert store.finished_job_ids("s") == {"j0", "j1"}


def _drop_connections(url_db: str, server) -> int:
    with psycopg.connect(host=str(server.socket), port=server.port, user="zoo", dbname="postgres",
                         autocommit=True) as admin:
        rows = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = %s AND pid <> pg_backend_pid()", (url_db,)).fetchall()
    return len(rows)


def test_a_connection_the_server_drops_mid_suite_is_replaced_and_nothing_is_lost(pg_url, postgres):
    database = make_url(pg_url).database
    with ResultStore(pg_url) as store:
        store.save_job(_job("before"))
        assert _drop_connections(database, postgres) >= 1   # the pooled connection is gone
        store.save_job(_job("after", seed=1))
        assert sorted(r["job_id"] for r in store.jobs()) == ["after", "before"]


def test_concurrent_writers_of_one_job_leave_one_row(pg_url):
    with ResultStore(pg_url) as store:
        errors: list[BaseException] = []

        def write(i: int) -> None:
            try:
                store.save_job({**_job("same"), "seed": i})
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and len(store.jobs()) == 1


def test_the_server_down_while_a_job_finishes_spools_its_result_until_the_next_start(
        pg_url, postgres, results_dir, shapes_root, tiny, monkeypatch, capsys):
    common = ["model=yolov4", "scheduler=inline", f"results_dir={results_dir}", f"datasets.shapes.root={shapes_root}",
              *tiny, "tier.compare_with=none", "suite_id=pg", f"store.url='{pg_url}'"]
    real_save = ResultStore.save_job

    def server_stops_then_save(self, record):
        postgres.stop()
        return real_save(self, record)

    monkeypatch.setattr(ResultStore, "save_job", server_stops_then_save)
    try:
        (row,) = run_one(common, echo=print).jobs
    finally:
        monkeypatch.setattr(ResultStore, "save_job", real_save)
        postgres.start()
    assert row["verdict"] == "MEASURED"
    assert any(p.name.startswith("job-") for p in spool.pending(spool.spool_dir(results_dir)))
    assert "written to the store at the next start" in capsys.readouterr().out
    run_one(common + ["seed=1"], echo=print)
    assert spool.pending(spool.spool_dir(results_dir)) == []
    with ResultStore(pg_url) as store:
        assert sorted(r["seed"] for r in store.jobs(suite_id="pg")) == [0, 1]
        assert store.get_job(row["job_id"])["metrics"] == row["metrics"]


def test_an_unreachable_server_is_one_store_error(postgres):
    with pytest.raises(Exception) as err:
        ResultStore(postgres.url("no_such_database"))
    assert "no_such_database" in str(err.value) and err.value.exit_code == 2
    with ResultStore(postgres.url()) as store:
        postgres.stop()
        try:
            with pytest.raises(StoreError):
                store.jobs()
        finally:
            postgres.start()
