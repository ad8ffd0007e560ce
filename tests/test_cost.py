"""`replicate cost`: per-suite and per-model cost from a real SQLite store, through the CLI."""

from __future__ import annotations

import json

import pytest

from replicate.cli import main
from replicate.store.results_store import ResultStore

TARGET = {"kind": "reference", "metric": "bbox_AP", "value": 0.5, "source": "calibration", "low": 0.45,
          "high": 0.55, "direction": "higher"}


def _job(suite_id, model, verdict, cost, **extra):
    return {"job_id": f"{suite_id}-{model}", "suite_id": suite_id, "model": model, "variant": "smoke",
            "framework": "torch", "tier": "smoke", "hardware": "cpu", "seed": 0, "verdict": verdict,
            "metric_name": "bbox_AP", "compared_with": TARGET, "cost": cost, "accelerator_hours": cost / 4,
            "wall_s": 60.0, **extra}


def _group(job):
    return {k: job[k] for k in ("suite_id", "model", "variant", "framework", "tier", "hardware", "verdict")} | {
        "seeds": [0]}


@pytest.fixture
def store_dir(results_dir):
    jobs = {"night1": [_job("night1", "yolov3", "PASS", 4.0, lost_s=90.0), _job("night1", "pix2pix", "PASS", 2.0)],
            "night2": [_job("night2", "yolov3", "PASS", 4.0),
                       _job("night2", "pix2pix", "EARLY_ABORT", 0.5, early_check={"aborted": True, "saved_cost": 1.5})]}
    with ResultStore(f"sqlite:///{results_dir / 'zoo.db'}") as store:
        for suite_id, rows in jobs.items():
            store.upsert_suite(suite_id, "smoke", {})
            for job in rows:
                store.save_job(job)
                store.save_group(_group(job))
    return results_dir


def test_cost_json_per_suite_and_per_model_over_history(store_dir, capsys):
    assert main(["cost", f"results_dir={store_dir}", "--json"]) == 0
    view = json.loads(capsys.readouterr().out)
    suites = {s["suite_id"]: s for s in view["suites"]}
    assert [s["suite_id"] for s in view["suites"]] == ["night2", "night1"]       # newest first
    assert suites["night1"]["cost"] == pytest.approx(6.0) and suites["night1"]["cost_per_pass"] == pytest.approx(3.0)
    assert suites["night1"]["lost_s"] == pytest.approx(90.0)
    assert suites["night2"]["early_abort_saved_cost"] == pytest.approx(1.5)
    assert suites["night2"]["passes"] == 1 and suites["night2"]["cost_per_pass"] == pytest.approx(4.5)
    models = {m["model"]: m for m in view["models"]}
    assert models["pix2pix"]["cost"] == pytest.approx(2.5) and models["pix2pix"]["passes"] == 1
    assert models["yolov3"]["accelerator_hours"] == pytest.approx(2.0)
    assert models["yolov3"]["cost_per_pass"] == pytest.approx(4.0)


def test_cost_of_one_suite_prints_tables(store_dir, capsys):
    assert main(["cost", "--suite-id", "night2", f"results_dir={store_dir}"]) == 0
    out = capsys.readouterr().out
    assert "cost per suite" in out and "night2" in out and "night1" not in out
    assert "cost per model (suite night2)" in out and "pix2pix" in out and "4.50" in out


def test_unknown_suite_exits_2_naming_it(store_dir, capsys):
    assert main(["cost", "--suite-id", "night9", f"results_dir={store_dir}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "night9" in err and len(err.splitlines()) == 1


def test_small_costs_keep_three_significant_figures(results_dir, capsys):
    # A smoke job on the cpu profile (0.10/h) costs a fraction of a cent: "0.00" would hide it.
    with ResultStore(f"sqlite:///{results_dir / 'zoo.db'}") as store:
        store.upsert_suite("smoke-night", "smoke", {})
        job = _job("smoke-night", "yolov3", "PASS", 0.00123, lost_s=3900.0)
        store.save_job(job)
        store.save_group(_group(job))
    assert main(["cost", f"results_dir={results_dir}"]) == 0
    out = capsys.readouterr().out
    assert out.count("0.00123") == 4 and "1h05m" in out     # cost and cost per PASS, per suite and model
