"""W&B for real, offline: a shrunk suite through the real harness, read back from wandb's files.

The acceptance of issue 5 part 1: the offline W&B directory holds one run per job and a
leaderboard table whose rows equal the store's values; W&B failing never fails a suite; the API
key is never written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from replicate.config.compose import compose_config
from replicate.errors import ConfigError
from replicate.harness import run_one, run_suite
from replicate.leaderboard import LEADERBOARD_KEYS, leaderboard_rows
from replicate.loggers import make_logger
from replicate.loggers.wandb_logger import (
    REDACTED,
    WandbLogger,
    curve_steps,
    job_summary,
    run_name,
    scrub,
    suite_summary,
    table_cell,
    table_columns,
    table_row,
)
from replicate.store.results_store import ResultStore

ENV_KEY = "env0123456789abcdef0123456789abcdef012345"      # shaped like a W&B API key
CONFIG_KEY = "cfg0123456789abcdef0123456789abcdef012345"
SMOKE_LABEL = "reference (this implementation)"
# Two seeds of one model (a seed group) and one other model; inline: no Ray start needed.
ENTRIES = ("suite.entries=[{model:faster_rcnn,tier:smoke,hardware:cpu,seeds:[0,1]},"
           "{model:yolov4,tier:smoke,hardware:cpu,seeds:[0]}]")


def _wandb_overrides(tiny: list[str]) -> list[str]:
    return [o for o in tiny if not o.startswith("logger=")] + ["logger=wandb"]


@pytest.fixture(scope="module")
def suite(tmp_path_factory, shapes_root, tiny_overrides):
    """The shrunk suite run once with W&B offline, an API key in the environment and one in config."""
    results = tmp_path_factory.mktemp("wandb") / "results"
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WANDB_API_KEY", ENV_KEY)      # offline is forced: the key must still not leak
        result = run_suite([ENTRIES, "suite_id=wb-night", "scheduler=inline", f"results_dir={results}",
                            f"datasets.shapes.root={shapes_root}", *_wandb_overrides(tiny_overrides),
                            "logger.mode=offline", f"+logger.api_key={CONFIG_KEY}"], echo=lines.append)
    store = ResultStore(f"sqlite:///{results / 'zoo.db'}")
    yield {"result": result, "results": results, "store": store, "lines": lines}
    store.close()


def _runs(wandb_files, results: Path):
    return wandb_files.offline_runs(results / "wandb")


def test_one_offline_run_per_job_with_config_history_and_summary(suite, wandb_files):
    store = suite["store"]
    jobs = {j["job_id"]: j for j in store.jobs(suite_id="wb-night")}
    runs = [r for r in _runs(wandb_files, suite["results"]) if r.run["job_type"] != "leaderboard"]
    assert len(jobs) == 3 and sorted(r.summary["job_id"] for r in runs) == sorted(jobs)
    for run in runs:
        job = jobs[run.summary["job_id"]]
        assert run.exit_code == 0
        assert run.run["group"] == "wb-night" and run.run["job_type"] == "smoke"
        assert run.run["name"] == f"{job['model']}-{job['variant']}-s{job['seed']}"
        assert run.run["project"] == "zoo-replicate"
        assert run.config["model"] == job["config"]["model"] and run.config["seed"] == job["seed"]
        steps = [row["_step"] for row in run.history]
        assert steps == sorted({p["step"] for p in job["curve"]})
        losses = {p["step"]: p["loss"] for p in job["curve"] if "loss" in p}
        assert {row["_step"]: row["loss"] for row in run.history if "loss" in row} == pytest.approx(losses)
        summary = run.summary
        assert summary["verdict"] == job["verdict"] and summary["cost"] == pytest.approx(job["cost"])
        assert summary["accelerator_hours"] == pytest.approx(job["accelerator_hours"])
        assert summary["target"]["value"] == job["compared_with"]["value"]
        assert summary["target"]["source"] == job["compared_with"]["source"]
        # Smoke rows are compared with a reference of this implementation: never called a claim.
        assert (summary["target"]["kind"], summary["target"]["label"]) == ("reference", SMOKE_LABEL)
        assert "claim" not in summary and "delta_to_claim" not in summary
        assert summary["times"]["wall_s"] == pytest.approx(job["wall_s"])
        assert summary["times"]["retry_overhead_s"] == pytest.approx(job["retry_overhead_s"])
        assert summary["attempts"] == len(job["attempts"]) == 1   # one attempt, run to its end
        assert summary["environment"]["torch"] == job["environment"]["torch"]
        if job["metric_value"] is not None:
            assert summary["delta_to_target"] == pytest.approx(job["metric_value"] - job["compared_with"]["value"])


def test_leaderboard_table_rows_equal_the_store(suite, wandb_files):
    (board,) = [r for r in _runs(wandb_files, suite["results"]) if r.run["job_type"] == "leaderboard"]
    assert board.run["name"] == "leaderboard-wb-night" and board.run["group"] == "wb-night"
    (logged,) = [row for row in board.history if "leaderboard/path" in row]
    table = json.loads((board.files_dir / logged["leaderboard/path"]).read_text())
    keys = list(LEADERBOARD_KEYS)
    assert table["columns"] == [*keys, "compared with", "measured", "suite_id"]
    assert {cells[-1] for cells in table["data"]} == {"wb-night"}   # the nights' tables join into one
    rows = leaderboard_rows(suite["store"], "wb-night")
    assert len(table["data"]) == len(rows) == 2          # one row per model group, seeds aggregated
    _same([cells[:len(keys)] for cells in table["data"]], [[table_cell(row[k]) for k in keys] for row in rows])
    by_model = {cells[0]: dict(zip(table["columns"], cells)) for cells in table["data"]}
    frcnn = next(row for row in rows if row["model"] == "faster_rcnn")
    assert by_model["faster_rcnn"]["compared with"] == (f"{SMOKE_LABEL}: {frcnn['target_value']:.4g} "
                                                        f"({frcnn['target_source']})")
    assert by_model["faster_rcnn"]["target_label"] == SMOKE_LABEL
    assert frcnn["seeds"] == [0, 1] and by_model["faster_rcnn"]["seeds"] == "0,1"


def _same(got: list[list], want: list[list]) -> None:
    """Cell by cell: floats equal to the last bit that JSON keeps, everything else exactly."""
    assert len(got) == len(want)
    for g_row, w_row in zip(got, want):
        for g, w in zip(g_row, w_row):
            assert g == (pytest.approx(w, rel=1e-12, abs=0) if isinstance(w, float) else w)


def test_the_api_key_is_written_nowhere_under_the_w_and_b_folder(suite):
    files = [p for p in (suite["results"] / "wandb").rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        assert ENV_KEY.encode() not in data and CONFIG_KEY.encode() not in data, path


def test_the_config_key_is_in_no_store_row(suite):
    # The store keeps each job's config and the suite's overrides: the key must be in neither.
    import sqlite3

    with sqlite3.connect(suite["results"] / "zoo.db") as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        cells = [str(c) for t in tables for row in db.execute(f'SELECT * FROM "{t}"') for c in row]
    assert any("wb-night" in c for c in cells) and not [c for c in cells if CONFIG_KEY in c]


def test_the_suite_says_where_its_w_and_b_files_are(suite):
    logged = suite["result"].logged
    assert str(suite["results"] / "wandb") in logged and "4 offline run(s)" in logged and "wandb sync" in logged
    assert not [line for line in suite["lines"] if "failed" in line]


def test_the_html_report_is_logged_as_an_artifact_of_the_leaderboard_run(suite, wandb_files):
    index = Path(suite["result"].report)
    assert index == suite["results"] / "reports" / "wb-night" / "index.html" and index.is_file()
    (board,) = [r for r in _runs(wandb_files, suite["results"]) if r.run["job_type"] == "leaderboard"]
    (artifact,) = [a for a in board.artifacts if a["type"] == "report"]
    assert artifact["name"] == "report-wb-night"
    written = {p.relative_to(index.parent).as_posix() for p in index.parent.rglob("*") if p.is_file()}
    assert "index.html" in artifact["paths"] and set(artifact["paths"]) == written


def test_unreachable_w_and_b_is_reported_once_and_the_run_still_lands_in_the_store(
        results_dir, shapes_root, tiny, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", ENV_KEY)
    lines: list[str] = []
    result = run_one(["model=yolov4", "scheduler=inline", "tier.compare_with=none", f"results_dir={results_dir}",
                      f"datasets.shapes.root={shapes_root}", *_wandb_overrides(tiny), "logger.mode=auto",
                      "logger.base_url=http://127.0.0.1:9", "logger.init_timeout_s=3"], echo=lines.append)
    (job,) = result.jobs
    assert job["verdict"] == "MEASURED"     # tier.compare_with=none: nothing to compare with
    failed = [line for line in lines if "W&B" in line]
    assert len(failed) == 1 and "online logging failed" in failed[0] and ENV_KEY not in failed[0]
    with ResultStore(f"sqlite:///{results_dir / 'zoo.db'}") as store:
        assert store.get_job(job["job_id"])["verdict"] == "MEASURED"
    assert "skipped after a failure" in result.logged
    for path in (p for p in results_dir.rglob("*") if p.is_file()):
        assert ENV_KEY.encode() not in path.read_bytes(), path


def _record(verdict: str, value, target: dict) -> dict:
    low_high = {"low": None, "high": None} if target["value"] is None else {"low": 0.9 * target["value"],
                                                                             "high": 1.1 * target["value"]}
    return {"job_id": f"j-{verdict}", "suite_id": "s", "model": "m", "variant": "full", "framework": "torch",
            "tier": "eval", "seed": 0, "verdict": verdict, "metric_name": "bbox_AP", "metric_value": value,
            "compared_with": {"metric": "bbox_AP", "direction": "higher", "split": "val", **target, **low_high}}


CLAIM = {"kind": "claim", "value": 37.0, "source": "paper, Table 2"}
NOTHING = {"kind": "none", "value": None, "source": "calibration run: nothing to compare with"}


def test_job_summary_labels_a_claim_as_a_claim_and_a_measured_job_as_measured():
    claimed = job_summary(_record("PASS", 37.5, CLAIM))
    assert (claimed["target"]["kind"], claimed["target"]["label"]) == ("claim", "claim (paper/zoo)")
    assert claimed["delta_to_target"] == pytest.approx(0.5)
    measured = job_summary(_record("MEASURED", 12.0, NOTHING))
    assert measured["verdict"] == "MEASURED" and measured["target"]["label"] == "nothing to compare with"
    assert measured["delta_to_target"] is None and measured["delta_pct"] is None


def test_the_leaderboard_counts_measured_apart_from_pass_and_labels_what_rows_compare_with():
    row = dict.fromkeys(LEADERBOARD_KEYS) | {"seeds": [0], "target_label": "claim (paper/zoo)"}
    rows = [row | {"model": "a", "verdict": "PASS", "target_value": 37.0, "target_source": "paper"},
            row | {"model": "b", "verdict": "MEASURED", "target_label": "nothing to compare with"}]
    summary = suite_summary("s", rows)
    assert (summary["passes"], summary["measured"]) == (1, 1)
    assert summary["verdicts"] == {"PASS": 1, "MEASURED": 1}
    cells = {c[0]: dict(zip(table_columns(), c)) for c in map(table_row, rows)}
    assert cells["a"]["compared with"] == "claim (paper/zoo): 37 (paper)" and cells["b"]["verdict"] == "MEASURED"
    assert cells["b"]["compared with"] == "nothing to compare with"


def test_the_summary_says_what_reproduced_the_paper_apart_from_the_canary_and_what_it_cost():
    row = dict.fromkeys(LEADERBOARD_KEYS) | {"seeds": [0], "currency": "USD"}
    rows = [row | {"model": "a", "verdict": "PASS", "section": "against the paper", "cost": 3.0},
            row | {"model": "b", "verdict": "BELOW", "section": "against the paper", "cost": 2.0},
            row | {"model": "c", "verdict": "PASS", "section": "canary", "cost": 1.0}]
    summary = suite_summary("s", rows)
    assert (summary["paper_groups"], summary["paper_passes"], summary["canary_groups"], summary["canary_passes"]) \
        == (2, 1, 1, 1)
    assert summary["cost"] == 6.0 and summary["cost_per_pass"] == 3.0 and summary["currency"] == "USD"
    assert suite_summary("s", [rows[1]])["cost_per_pass"] is None   # nothing passed: no cost per PASS


def test_an_unwritable_folder_is_reported_and_never_raises(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    lines: list[str] = []
    logger = WandbLogger(mode="offline", dir=str(blocker / "results"))
    logger.echo = lines.append
    record = {"job_id": "j", "suite_id": "s", "model": "m", "variant": "v", "framework": "torch", "tier": "smoke",
              "seed": 0, "verdict": "PASS"}
    logger.log_job(record)
    logger.log_job(record)            # skipped after the first failure: still one line
    logger.log_suite("s", [], None)
    assert len(lines) == 1 and "logging failed" in lines[0] and logger.runs == 0


def test_logger_config_none_auto_and_bad_mode(monkeypatch):
    assert make_logger(compose_config(["logger=none"]), print) is None
    default = make_logger(compose_config([]), print)
    assert isinstance(default, WandbLogger) and default.mode == "offline" and default.dir == Path("results")
    monkeypatch.setenv("WANDB_API_KEY", ENV_KEY)
    assert make_logger(compose_config([]), print).mode == "online"
    assert make_logger(compose_config(["logger.mode=disabled"]), print).where().startswith("W&B: disabled")
    with pytest.raises(ConfigError, match="logger.mode"):
        make_logger(compose_config(["logger.mode=sometimes"]), print)


def test_the_reader_rejects_a_corrupted_chunk(suite, wandb_files, tmp_path):
    path = next((suite["results"] / "wandb").rglob("run-*.wandb"))
    raw = bytearray(path.read_bytes())
    raw[40] ^= 0xFF
    broken = tmp_path / "broken.wandb"
    broken.write_bytes(bytes(raw))
    with pytest.raises(wandb_files.CorruptWandbFile):
        wandb_files.read_records(broken)


def test_scrub_drops_secret_keys_and_redacts_secret_values_and_url_passwords():
    config = {"store": {"url": "postgresql+psycopg://zoo:pa:ss@db:5432/zoo"}, "logger": {"api_key": "k", "mode": "x"},
              "note": f"key {ENV_KEY} here", "list": [{"Token": 1, "ok": 2}], "local": "sqlite:///results/zoo.db"}
    clean = scrub(config, [ENV_KEY])
    assert clean["store"]["url"] == f"postgresql+psycopg://zoo:{REDACTED}@db:5432/zoo"
    assert clean["logger"] == {"mode": "x"} and clean["list"] == [{"ok": 2}]
    assert clean["note"] == f"key {REDACTED} here" and clean["local"] == "sqlite:///results/zoo.db"


def test_curve_points_of_one_step_are_merged_and_sorted_and_names_follow_the_framework():
    curve = [{"step": 2, "loss": 1.0, "train_s": 3.0}, {"step": 1, "loss": 2.0}, {"step": 2, "bbox_AP": 0.5},
             {"step": 3, "loss": 0.5, "flag": True, "note": "x"}]
    assert curve_steps(curve) == [(1, {"loss": 2.0}), (2, {"loss": 1.0, "train_s": 3.0, "bbox_AP": 0.5}),
                                  (3, {"loss": 0.5})]
    job = {"model": "yolov3", "variant": "smoke", "seed": 2, "framework": "torch"}
    assert run_name(job) == "yolov3-smoke-s2"
    assert run_name({**job, "framework": "tensorflow"}) == "yolov3-smoke-s2-tensorflow"
