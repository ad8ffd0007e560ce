"""Tonight's plan: an entry's cadence makes a job whose fingerprint (config, model code, harness,
packages, data) equals a PASS inside it UNCHANGED (no run, no cost, a link to that PASS); an edited
model, a due job or one never run runs; the suite's budget leaves the rest for another night, in
the order due, then changed, each stalest first."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from replicate.cli import main
from replicate.errors import ConfigError
from replicate.harness import run_suite
from replicate.scheduling.nightly import cadence_s, decide, job_fingerprint
from replicate.store.results_store import ResultStore

# A band around what yolov4's shrunk job scores (bbox_AP 0.0236 at seed 0, 8 steps), so it PASSes.
BAND = ["model.tiers.smoke.reference=null",
        "model.tiers.smoke.reference={metric:bbox_AP,value:0.0225,spread:0.0015,direction:higher,"
        "draws:[0.020,0.025,0.022,0.024,0.021,0.023],source:'a band around the shrunk job, for this test'}"]
STEPS = ["model.tiers.smoke.recipe.steps=8", "model.tiers.smoke.recipe.checkpoint_every=4"]


def _entries(every: str, seeds: str = "[0]") -> str:
    return f"suite.entries=[{{model:yolov4,tier:smoke,hardware:cpu,seeds:{seeds},every:{every}}}]"


def _common(results_dir, shapes_root, tiny, every="7d"):
    return ["suite=smoke", _entries(every), "scheduler=inline", f"results_dir={results_dir}",
            f"datasets.shapes.root={shapes_root}", *tiny, *STEPS, *BAND]


def test_a_pass_inside_its_cadence_is_unchanged_and_an_edit_or_a_new_cadence_runs_again(
        results_dir, shapes_root, tiny, capsys):
    common = _common(results_dir, shapes_root, tiny)
    first = run_suite([*common, "suite_id=night-1"], echo=lambda _: None)
    assert [j["verdict"] for j in first.jobs] == ["PASS"] and first.all_pass

    second = run_suite([*common, "suite_id=night-2"], echo=lambda _: None)
    (row,) = second.jobs
    assert row["verdict"] == "UNCHANGED" and row["cost"] == 0 and row["wall_s"] == 0
    assert row["environment"]["unchanged_of"] == first.jobs[0]["job_id"]
    assert row["metric_value"] == pytest.approx(first.jobs[0]["metric_value"])
    assert "unchanged since its PASS in night-1" in row["environment"]["unchanged_reason"]
    assert second.all_pass and second.groups[0]["verdict"] == "PASS"
    assert "not run again" in second.groups[0]["noise_note"]

    # The plan says the same before anything runs.
    assert main(["suite", *common, "suite_id=night-3", "--plan", "--json"]) == 0
    (planned,) = json.loads(capsys.readouterr().out)["jobs"]
    assert planned["status"].startswith("UNCHANGED: unchanged since its PASS in night-1") and not planned["runs"]

    # Another config (here the cadence's own entry with another recipe) is another fingerprint: it runs.
    third = run_suite([*common, "suite_id=night-3", "model.tiers.smoke.recipe.lr=0.005"], echo=lambda _: None)
    assert third.jobs[0]["verdict"] != "UNCHANGED" and third.jobs[0]["wall_s"] > 0


def _night(store, suite_id, job_id, config_hash, environment, verdict, age_days, now):
    store.upsert_suite(suite_id, "smoke", {})
    store.save_job({"job_id": job_id, "suite_id": suite_id, "model": "yolov4", "variant": "tiny", "framework": "torch",
                    "tier": "smoke", "hardware": "cpu", "seed": 0, "verdict": verdict, "config_hash": config_hash,
                    "environment": environment, "config": {"x": 1}, "created_at": now - timedelta(days=age_days)})


def test_the_budget_runs_what_is_due_then_what_changed_each_stalest_first(results_dir, shapes_root, tiny, tmp_path):
    """Three jobs: one changed since its PASS yesterday, one last run 9 days ago (due at 7d), one
    never run; a budget for two runs the due ones and leaves the changed one for another night."""
    from replicate.config.compose import compose_config
    from replicate.plan import plan_suite

    entries = ("suite.entries=[{model:yolov4,tier:smoke,hardware:cpu,seeds:[0,1,2],every:7d}]")
    overrides = ["suite=smoke", entries, "suite_id=tonight", f"results_dir={results_dir}", *tiny, *STEPS]
    root = compose_config(overrides)
    _, jobs = plan_suite(root, overrides)
    now = datetime(2026, 12, 7, 2, tzinfo=timezone.utc)
    with ResultStore(f"sqlite:///{tmp_path / 'zoo.db'}") as store:
        seeded = []
        for seed, (verdict, age, edit) in enumerate([("PASS", 1, "edited"), ("PASS", 9, None)]):
            job = jobs[seed]
            printed = job_fingerprint(job, None)
            environment = {k: v for k, v in printed.items() if k != "config_hash"}
            if edit:
                environment["model_code"] = "0" * 16   # the model's code was other then
            _night(store, f"n-{seed}", f"old-{seed}", job.spec.config_hash, environment, verdict, age, now)
            store.save_job({**store.get_job(f"old-{seed}"), "seed": job.seed})
            seeded.append(job)
        costs = {j.job_id: 1.0 for j in jobs}
        decisions = decide(jobs, store, now=now, every={j.job_id: 7 * 86400.0 for j in jobs}, costs=costs,
                           budget=2.0, dataset_hashes={})
    by_seed = {job.seed: d for job, d in zip(jobs, decisions)}
    assert by_seed[2].action == "run" and by_seed[2].reason == "due: never run"
    assert by_seed[1].action == "run" and by_seed[1].reason.startswith("due: last run 9.0 days ago")
    assert by_seed[0].action == "deferred" and "changed since its last PASS: model_code" in by_seed[0].reason
    assert "left for another night" in by_seed[0].reason


@pytest.mark.parametrize("every", ["7", "0d", "1w", "-1d", "7days", "99999d"])
def test_a_cadence_that_is_not_days_or_hours_is_refused_naming_it(every):
    with pytest.raises(ConfigError) as error:
        cadence_s(every, "suite.entries[0].every")
    assert error.value.key == "suite.entries[0].every" and "is not a cadence" in str(error.value)
    assert cadence_s("12h") == 12 * 3600 and cadence_s("30d") == 30 * 86400 and cadence_s(None) is None


def test_a_bad_cadence_or_budget_is_exit_2_from_the_cli(capsys):
    assert main(["suite", "suite=smoke", _entries("weekly"), "--plan"]) == 2
    assert "suite.entries[0].every" in capsys.readouterr().err
    assert main(["suite", "suite=smoke", "suite.budget=-1", "--plan"]) == 2
    assert "suite.budget" in capsys.readouterr().err
