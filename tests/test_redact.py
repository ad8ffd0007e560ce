"""Credentials never reach what a job records: its spec (Ray task arguments), the store, history.

The store URL comes from the environment (``ZOO_STORE_URL``, a Kubernetes Secret) with its
password; a logger may carry a key. Both must stay out of ``spec.config`` and every store row,
while job ids and config hashes do not depend on where results are stored.
"""

from __future__ import annotations

import json
import sqlite3

from replicate.config.compose import compose_config
from replicate.harness import run_suite
from replicate.plan import plan_suite
from replicate.redact import REDACTED, recorded_config, redacted_overrides
from replicate.resolved import make_spec

PASSWORD = "S3cretPW"
PG_URL = f"postgresql+psycopg://zoo:{PASSWORD}@db.internal:5432/zoo"
API_KEY = "cfg0123456789abcdef0123456789abcdef012345"   # shaped like a W&B API key


def test_the_spec_of_a_job_on_a_postgres_store_holds_no_password(monkeypatch):
    monkeypatch.setenv("ZOO_STORE_URL", PG_URL)
    cfg = compose_config(["model=yolov4", "store=postgres", f"+logger.api_key={API_KEY}"])
    spec = make_spec(cfg, "night")
    recorded = json.dumps(spec.to_dict())          # what Ray ships and the store keeps
    assert PASSWORD not in recorded and API_KEY not in recorded
    # Still says which store: scheme, user and host are kept.
    assert spec.config["store"]["url"] == f"postgresql+psycopg://zoo:{REDACTED}@db.internal:5432/zoo"
    assert "api_key" not in spec.config["logger"] and spec.config["logger"]["project"] == "zoo-replicate"
    # The worker's part of the config is whole, and ids do not depend on the store.
    sqlite = make_spec(compose_config(["model=yolov4"]), "night")
    assert (spec.job_id, spec.config_hash) == (sqlite.job_id, sqlite.config_hash)
    assert spec.config["model"] == sqlite.config["model"] and spec.config["datasets"] == sqlite.config["datasets"]


def test_a_planned_suite_on_a_postgres_store_holds_no_password(monkeypatch):
    monkeypatch.setenv("ZOO_STORE_URL", PG_URL)
    overrides = ["suite=smoke", "suite_id=fixed", "store=postgres"]
    _, jobs = plan_suite(compose_config(overrides), overrides)
    assert jobs and not [j.spec.job_id for j in jobs if PASSWORD in json.dumps(j.spec.to_dict())]


def test_only_infrastructure_sections_lose_secret_looking_keys():
    config = {"store": {"url": PG_URL, "password": "x"}, "logger": {"api_key": "k", "mode": "offline"},
              "model": {"num_tokens": 4, "weights": f"https://u:{PASSWORD}@host/w.pth"}}
    clean = recorded_config(config)
    assert clean["store"] == {"url": f"postgresql+psycopg://zoo:{REDACTED}@db.internal:5432/zoo"}
    assert clean["logger"] == {"mode": "offline"}
    assert clean["model"] == {"num_tokens": 4, "weights": f"https://u:{REDACTED}@host/w.pth"}
    assert redacted_overrides([f"+logger.api_key={API_KEY}", f"store.url={PG_URL}", "seed=1"]) == [
        f"+logger.api_key={REDACTED}", f"store.url=postgresql+psycopg://zoo:{REDACTED}@db.internal:5432/zoo",
        "seed=1"]


def _all_cells(db_path) -> list[str]:
    """Every value of every row of every table, as text (the raw SQLite file, no ORM)."""
    with sqlite3.connect(db_path) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return [str(cell) for table in tables for row in db.execute(f'SELECT * FROM "{table}"') for cell in row]


def test_a_suite_with_secrets_in_its_config_stores_none_of_them(results_dir, shapes_root, tiny, capsys):
    from replicate.cli import main

    entries = "suite.entries=[{model:yolov4,tier:smoke,hardware:cpu,seeds:[0]}]"
    # Logger settings with credentials, as a deployment might add them (the logger section is open
    # to new keys; the typed store section refuses unknown ones).
    secrets = [f"+logger.replica_url={PG_URL}", f"+logger.api_key={API_KEY}", f"+logger.endpoint={PG_URL}"]
    result = run_suite([entries, "suite_id=secret-night", "scheduler=inline", "tier.compare_with=none",
                        f"results_dir={results_dir}", f"datasets.shapes.root={shapes_root}", *tiny, *secrets],
                       echo=lambda line: None)
    (job,) = result.jobs
    assert job["verdict"] == "MEASURED" and job["config"]["store"]["url"].startswith("sqlite:///")
    cells = _all_cells(results_dir / "zoo.db")
    assert any("secret-night" in c for c in cells)                  # the check reads the real rows
    assert not [c for c in cells if PASSWORD in c or API_KEY in c]
    assert main(["history", f"results_dir={results_dir}", "--json"]) == 0
    out = capsys.readouterr().out
    assert job["job_id"] in out and PASSWORD not in out and API_KEY not in out



def test_one_rule_redacts_a_credential_in_each_form_and_keeps_the_rest(monkeypatch):
    from replicate.redact import environment_secrets, holds_credential, one_line, redact_text

    monkeypatch.delenv("ZOO_STORE_URL", raising=False)
    query = "postgresql+psycopg://zoo@db:5432/zoo?sslmode=require&password=S3cretPW&sslpassword=K3yPass&x=1"
    assert redact_text(query) == ("postgresql+psycopg://zoo@db:5432/zoo?sslmode=require&password=<redacted>"
                                  "&sslpassword=<redacted>&x=1")
    # libpq's keyword/value form; a path (passfile, sslkey) is not a secret and is kept
    assert redact_text("host=db password=S3cretPW passfile=/run/pgpass sslkey=/k.pem") == (
        "host=db password=<redacted> passfile=/run/pgpass sslkey=/k.pem")
    assert redact_text("access_token=abc num_tokens=4") == "access_token=<redacted> num_tokens=4"
    # a Secret's value from the environment, wherever it appears, percent-encoded or not
    monkeypatch.setenv("ZOO_STORE_URL", "postgresql://zoo:p%40ss%2Fword@db/zoo")
    assert set(environment_secrets()) >= {"p%40ss%2Fword", "p@ss/word"}
    assert redact_text("driver said: bad password p@ss/word") == "driver said: bad password <redacted>"
    assert holds_credential(f"store.url={PG_URL}") and not holds_credential("store.url=sqlite:///r/zoo.db")
    assert one_line(f"a\nb {PG_URL}") == "a\\nb postgresql+psycopg://zoo:<redacted>@db.internal:5432/zoo"


def test_the_stores_own_error_and_a_runs_echo_hide_a_query_password():
    """Not only the CLI's line: the store's message (echoed by a run, kept in a spool note) and
    every line a run echoes are redacted at the source."""
    import pytest

    from replicate.errors import ConfigError
    from replicate.redact import redacting
    from replicate.store.results_store import ResultStore

    with pytest.raises(ConfigError) as raised:   # nothing listens on port 1 of the loopback
        ResultStore(f"postgresql+psycopg://zoo@127.0.0.1:1/zoo?password={PASSWORD}")
    assert PASSWORD not in str(raised.value) and "127.0.0.1" in str(raised.value)
    lines: list[str] = []
    redacting(lines.append)(f"store {PG_URL}: down; spooled")
    assert lines == [f"store postgresql+psycopg://zoo:{REDACTED}@db.internal:5432/zoo: down; spooled"]
