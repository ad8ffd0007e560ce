"""A job's deadline comes from its work: a margin times the median wall time of earlier finished
runs of the same recipe on the same profile, read from the store; without one, job_timeout_s."""

from __future__ import annotations

import pytest

from replicate.config.compose import compose_config
from replicate.harness import run_one
from replicate.jobs import JobResult
from replicate.records import job_record
from replicate.resolved import resolve_job
from replicate.scheduling.deadlines import job_deadlines, longest_first, recipe_fingerprint
from replicate.store.results_store import ResultStore

NO_VERDICT = ["tier.compare_with=none"]


def _job(results_dir, *overrides):
    return resolve_job(compose_config(["model=yolov4", f"results_dir={results_dir}", *NO_VERDICT, *overrides]), None)


def _past_run(store, job, wall_parts=(1.0, 10.0, 1.0), verdict="MEASURED"):
    """A finished run of ``job`` in the store, as the harness records one (its own id)."""
    result = JobResult(job_id=f"past-{len(store.jobs())}")
    result.times.setup_s, result.times.train_s, result.times.eval_s = wall_parts
    spec = type(job.spec)(**{**vars(job.spec), "job_id": result.job_id})
    store.save_job(job_record(spec, result, verdict, None, job.target, job.hardware))


def test_the_fingerprint_ignores_the_seed_and_the_suite_but_not_the_recipe(tmp_path):
    base = recipe_fingerprint(_job(tmp_path).spec.config)
    assert recipe_fingerprint(_job(tmp_path, "seed=3", "suite_id=x").spec.config) == base
    assert recipe_fingerprint(_job(tmp_path, "model.tiers.smoke.recipe.steps=999").spec.config) != base
    assert recipe_fingerprint(_job(tmp_path, "datasets.shapes.image_size=96").spec.config) != base


def test_deadlines_are_a_margin_over_the_median_of_the_same_recipe_on_the_same_profile(tmp_path):
    job = _job(tmp_path)
    scheduler = compose_config(["scheduler.deadline_floor_s=0", "scheduler.deadline_margin=3",
                                "scheduler.job_timeout_s=900"]).scheduler
    with ResultStore(f"sqlite:///{tmp_path}/zoo.db") as store:
        (empty,) = job_deadlines([job], store, scheduler).values()
        assert empty.seconds == 900 and "no earlier finished run" in empty.basis
        for train_s in (10.0, 20.0, 30.0):
            _past_run(store, job, (1.0, train_s, 1.0))
        _past_run(store, job, (1.0, 500.0, 1.0), verdict="ERROR")           # did not train to its end
        _past_run(store, _job(tmp_path, "model.tiers.smoke.recipe.steps=999"), (1.0, 900.0, 1.0))   # another recipe
        _past_run(store, _job(tmp_path, "hardware=h100x1"), (1.0, 900.0, 1.0))                      # another profile
        deadline = job_deadlines([_job(tmp_path, "seed=7")], store, scheduler)[_job(tmp_path, "seed=7").job_id]
        assert deadline.seconds == pytest.approx(3 * 22.0)
        assert "median of 3 earlier run(s) of this recipe on cpu" in deadline.basis
        floored = compose_config(["scheduler.deadline_floor_s=600"]).scheduler
        (short,) = job_deadlines([job], store, floored).values()
        assert short.seconds == 600 and short.basis.startswith("scheduler.deadline_floor_s")


def test_jobs_start_longest_first_after_those_without_history(tmp_path):
    """The store's durations order the submissions: no history first (suite order), then the
    longest expected; without a store to read, the suite's order stands."""
    short, long_, unknown, medium = (_job(tmp_path, f"model.tiers.smoke.recipe.steps={n}") for n in (10, 30, 40, 20))
    scheduler = compose_config([]).scheduler
    with ResultStore(f"sqlite:///{tmp_path}/zoo.db") as store:
        for job, train_s in ((short, 10.0), (long_, 300.0), (medium, 50.0)):
            _past_run(store, job, (1.0, train_s, 1.0))
        suite = [short, long_, unknown, medium]
        ordered = longest_first(suite, job_deadlines(suite, store, scheduler))
    assert [j.job_id for j in ordered] == [j.job_id for j in (unknown, long_, medium, short)]
    assert longest_first(suite, {}) == suite


@pytest.mark.parametrize("key, value", [("deadline_margin", 0.5), ("deadline_floor_s", -1), ("deadline_history", 0)])
def test_a_bad_deadline_setting_exits_2_naming_it(key, value, capsys):
    from replicate.cli import main

    assert main(["run", "model=yolov4", f"scheduler.{key}={value}", *NO_VERDICT]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: scheduler.{key}") and len(err.splitlines()) == 1, err


def test_a_job_past_its_deadline_is_stopped_and_says_why(ray_local, results_dir, tiny):
    """Earlier runs of this recipe took 0.2 s: with margin 1 and no floor, the real run (seconds)
    is stopped at its deadline, and the result names the deadline and where it came from."""
    overrides = ["model=yolov4", f"results_dir={results_dir}", *tiny, *NO_VERDICT, "scheduler.deadline_floor_s=0",
                 "scheduler.deadline_margin=1", "model.tiers.smoke.recipe.steps=400"]
    job = resolve_job(compose_config(overrides), None)
    with ResultStore(f"sqlite:///{results_dir}/zoo.db") as store:
        _past_run(store, job, (0.05, 0.1, 0.05))
    result = run_one(overrides, echo=lambda _: None)
    (row,) = result.jobs
    assert row["verdict"] == "ERROR" and row["failure_impact"] == "hang", row["failure_message"]
    assert "running for more than its deadline of 0 s: 1 x 0 s (median of 1 earlier run(s)" in row["failure_message"]
    assert row["environment"]["deadline"]["seconds"] == pytest.approx(0.2)


def test_a_job_records_the_deadline_it_ran_under(ray_local, results_dir, tiny):
    result = run_one(["model=yolov4", f"results_dir={results_dir}", *tiny, *NO_VERDICT], echo=lambda _: None)
    (row,) = result.jobs
    assert row["verdict"] == "MEASURED"
    assert row["environment"]["deadline"]["basis"].startswith("scheduler.job_timeout_s")
