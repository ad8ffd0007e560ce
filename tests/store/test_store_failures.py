"""The store never loses a finished result: a database that is corrupt, read-only, gone or full
is one line (exit 2) naming it for every command, and a result that cannot be written waits in
the spool beside the checkpoints until the next start writes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from replicate.cli import main
from replicate.errors import StoreError
from replicate.harness import run_one
from replicate.store import spool
from replicate.store.results_store import ResultStore

COMMANDS = ["history", "report", "cost", "run model=yolov4 logger=none"]


def _one_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("error:")]
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_corrupt_store_is_one_line_and_exit_2_for_every_command(command, tmp_path, capsys):
    (tmp_path / "zoo.db").write_bytes(b"this is not a SQLite database, just bytes " * 100)
    assert main([*command.split(), f"results_dir={tmp_path}"]) == 2
    line = _one_line(capsys)
    assert str(tmp_path / "zoo.db") in line and "Traceback" not in line


def _job(job_id: str = "j1") -> dict:
    return {"job_id": job_id, "model": "m", "variant": "v", "framework": "torch", "tier": "smoke",
            "hardware": "cpu", "seed": 0, "verdict": "PASS", "suite_id": "s"}


def test_a_read_only_store_refuses_writes_with_a_store_error_naming_it(tmp_path):
    path = tmp_path / "zoo.db"
    ResultStore(f"sqlite:///{path}").close()
    read_only = ResultStore(f"sqlite:///file:{path}?mode=ro&uri=true")
    assert read_only.jobs() == []
    with pytest.raises(StoreError, match="readonly"):
        read_only.save_job(_job())


def test_a_store_file_deleted_while_open_refuses_writes_instead_of_losing_them(tmp_path):
    path = tmp_path / "zoo.db"
    store = ResultStore(f"sqlite:///{path}")
    store.save_job(_job("before"))
    path.unlink()
    with pytest.raises(StoreError, match=f"{path}.*gone"):
        store.save_job(_job("after"))


def test_a_result_the_store_cannot_take_is_spooled_and_written_at_the_next_start(results_dir, shapes_root, tiny,
                                                                                   monkeypatch, capsys):
    common = ["model=yolov4", "scheduler=inline", f"results_dir={results_dir}", f"datasets.shapes.root={shapes_root}",
              *tiny, "tier.compare_with=none", "suite_id=spooled"]
    real_save = ResultStore.save_job

    def deleted_then_save(self, record):   # the database file disappears while the job trains
        (results_dir / "zoo.db").unlink()
        return real_save(self, record)

    monkeypatch.setattr(ResultStore, "save_job", deleted_then_save)
    (row,) = run_one(common, echo=print).jobs
    assert row["verdict"] == "MEASURED"   # the run's own outcome is still shown
    out = capsys.readouterr().out
    kept, group = spool.pending(spool.spool_dir(results_dir))   # the job, and its seed group's verdict
    assert kept.name.startswith("job-") and group.name.startswith("group-")
    assert str(kept) in out and "gone" in out
    assert json.loads(kept.read_text())["record"]["metrics"] == row["metrics"]

    monkeypatch.setattr(ResultStore, "save_job", real_save)
    run_one(common + ["seed=1"], echo=print)     # the next start writes the spool first
    assert spool.pending(spool.spool_dir(results_dir)) == []
    with ResultStore(f"sqlite:///{results_dir / 'zoo.db'}") as store:
        stored = {r["seed"]: r for r in store.jobs(suite_id="spooled")}
        assert store.groups("spooled")
    assert stored[0]["metrics"] == row["metrics"] and 1 in stored


def test_a_spool_file_that_is_not_a_record_is_set_aside_not_run(tmp_path):
    directory = tmp_path / "spool"
    directory.mkdir()
    (directory / "job-x.json").write_text("__import__('os').system('touch ran')")
    store = ResultStore("sqlite://")
    lines: list[str] = []
    assert spool.drain(directory, store, lines.append) == 0
    assert (directory / "job-x.unreadable").is_file() and not Path("ran").exists()
    assert "set aside" in lines[0]


@pytest.mark.parametrize("url", ["postgresql+psycopg://zoo:se@cret@db/zoo", "postgresql+psycopg://zoo:se@cr:et@db:5/zoo"])
def test_a_password_with_an_unencoded_at_sign_is_refused_without_printing_any_of_it(url, capsys):
    assert main(["history", f"store.url='{url}'"]) == 2
    line = _one_line(capsys)
    assert "%40" in line and "se" not in line.split("store.url:", 1)[1].replace("user or password", "")
    assert "cret" not in line and "cr:et" not in line
