"""The lab's reference curves, end to end on a stand-in for a full-tier job (yolov4's smoke job
shrunk to seconds, judged against a claim, with its 25% check on and no curve in its config): a
PASS becomes a candidate, ``replicate reference promote`` makes it the reference of the next runs
of that recipe, a training defect (learning rate x10, injected) is stopped at 25% against it, a
clean run passes; six promoted runs give the band from their spread through the smoke bands'
functions; bad input to ``replicate reference`` exits 2 naming it."""

from __future__ import annotations

import dataclasses
import json

import pytest

from replicate.cli import main
from replicate.config.compose import compose_config
from replicate.harness import SuiteRun
from replicate.jobs import EARLY_ABORT, PASS
from replicate.plan import plan_suite
from replicate.reference_runs import early_check_from, matching, recipe_key
from replicate.store.results_store import ResultStore
from replicate.verdict import EarlyCheck, Target, draws_band, draws_bound, early_false_alarm

ENTRIES = "suite.entries=[{model:yolov4,tier:smoke,hardware:cpu,seeds:[0]}]"
STEPS = ["model.tiers.smoke.recipe.steps=8", "model.tiers.smoke.recipe.checkpoint_every=4"]
# The stand-in's claim: what this shrunk job scores (bbox_AP 0.0236 at seed 0), +-50%.
CLAIM = Target("claim", "bbox_AP", 0.02, 0.5, "relative", "higher", "stand-in claim (synthetic shapes)")


def _job(results_dir, shapes_root, tiny, suite_id, *extra):
    overrides = ["suite=smoke", ENTRIES, f"suite_id={suite_id}", "scheduler=inline", f"results_dir={results_dir}",
                 f"datasets.shapes.root={shapes_root}", *tiny, *STEPS, *extra]
    root = compose_config(overrides)
    _, (job,) = plan_suite(root, overrides)
    # A full-tier job as the lab runs it: judged against a claim, the 25% point measured, no curve in the config.
    return root, dataclasses.replace(job, target=CLAIM, early=EarlyCheck(fraction=0.25, evaluate=True))


def _run(root, job, suite_id):
    lines: list[str] = []
    with SuiteRun(root, suite_id, lines.append) as run:
        run.register("standin", [])
        (row,) = run.execute([job], skip_finished=False).jobs
    return row, lines


def test_a_pass_promoted_sets_the_25_percent_check_that_stops_a_defect(results_dir, shapes_root, tiny, capsys):
    root, job = _job(results_dir, shapes_root, tiny, "night-1")
    first, lines = _run(root, job, "night-1")
    assert first["verdict"] == PASS and first["early_check"]["metric"] is not None
    assert first["early_check"]["threshold"] is None   # nothing promoted yet: measured, not judged
    assert "no promoted reference run of this recipe" in first["early_check"]["source"]
    assert f"job {job.job_id}: candidate reference run 1 for the 25% check of its recipe " \
           "(replicate reference promote 1)" in lines

    assert main(["reference", "list", f"results_dir={results_dir}", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["status"], listed["job_id"], listed["early_metric"]) == \
        ("candidate", job.job_id, pytest.approx(first["early_check"]["metric"]))
    assert main(["reference", "promote", "1", f"results_dir={results_dir}"]) == 0
    assert "reference run 1: promoted" in capsys.readouterr().out

    _, clean = _job(results_dir, shapes_root, tiny, "night-2")
    second, _ = _run(root, clean, "night-2")
    early = second["early_check"]
    assert second["verdict"] == PASS and not early["aborted"]
    assert early["threshold"] == pytest.approx(0.5 * first["early_check"]["metric"])   # tier.early_check.tolerance
    assert "1 promoted reference run(s) of the lab (ids 1)" in early["source"]

    _, broken = _job(results_dir, shapes_root, tiny, "night-3", "defect=lr_10x")
    third, _ = _run(root, broken, "night-3")
    assert third["verdict"] == EARLY_ABORT and third["early_check"]["reason"] == "weights"
    assert third["early_check"]["weight_drift"] > 1.5 * first["early_check"]["weight_drift"]
    assert third["early_check"]["saved_cost"] > 0
    with ResultStore(f"sqlite:///{results_dir / 'zoo.db'}") as store:   # neither the defect nor a repeat is offered
        assert [r["job_id"] for r in store.reference_runs()] == [job.job_id, clean.job_id]


def _imported(key: dict, early_metric: float, drift: float, source: str) -> dict:
    return {**key, "tier": "full", "metric_name": "bbox_AP", "direction": "higher", "fraction": 0.25,
            "early_metric": early_metric, "early_loss": 15.9, "early_drift": drift, "final_metric": 0.024,
            "source": source}


def test_six_promoted_runs_give_the_band_from_their_spread(results_dir, shapes_root, tiny, tmp_path, capsys):
    root, job = _job(results_dir, shapes_root, tiny, "night-1")
    values = [0.0160, 0.0158, 0.0163, 0.0161, 0.0159, 0.0162]
    drifts = [0.00111, 0.00112, 0.00110, 0.00113, 0.00111, 0.00112]
    store_url = f"sqlite:///{results_dir / 'zoo.db'}"
    results_dir.mkdir(parents=True)
    ResultStore(store_url).close()
    for number, (value, drift) in enumerate(zip(values, drifts), 1):
        path = tmp_path / f"curve{number}.json"
        path.write_text(json.dumps(_imported(recipe_key(job), value, drift, f"transcribed log, run {number}")))
        assert main(["reference", "import", str(path), f"results_dir={results_dir}"]) == 0
        assert main(["reference", "promote", str(number), f"results_dir={results_dir}"]) == 0
    capsys.readouterr()
    with ResultStore(store_url) as store:
        runs = matching(job, store.reference_runs())
    few, six = early_check_from(job, runs[:2]), early_check_from(job, runs)
    alarm = early_false_alarm(job.cfg)
    assert six.threshold == pytest.approx(draws_bound(values, alarm, "higher"))   # the smoke bands' one home
    assert six.drift_band == pytest.approx(draws_band(drifts, alarm))
    width = {n: check.drift_band[1] - check.drift_band[0] for n, check in ((2, few), (6, six))}
    assert six.threshold > few.threshold and width[6] < width[2]   # six runs tighten both
    assert "the spread of 6 promoted reference runs" in six.source
    # Another recipe (another step count) has no reference: its 25% point is measured, not judged.
    _, longer = _job(results_dir, shapes_root, tiny, "night-1", "model.tiers.smoke.recipe.steps=12")
    assert matching(longer, runs) == []


@pytest.mark.parametrize("args, said", [
    (["promote", "99"], "reference run 99: no such run"),
    (["show", "7"], "reference run 7: no such run"),
    (["retire", "0"], "reference run 0: no such run")])
def test_an_unknown_run_is_exit_2_naming_it(results_dir, args, said, capsys):
    results_dir.mkdir(parents=True)
    ResultStore(f"sqlite:///{results_dir / 'zoo.db'}").close()
    assert main(["reference", *args, f"results_dir={results_dir}"]) == 2
    assert said in capsys.readouterr().err


@pytest.mark.parametrize("content, said", [
    ("[1, 2]", "a reference curve is one JSON object"),
    ('{"job_id": "x", "source": "s"}', "an imported curve has no job_id"),
    ('{"model": "yolov4"}', "'source' must say where the curve was read"),
    ('{"model": "yolov4", "source": "log"}', "lacks required field(s) ['variant'"),
    ('{"model": "yolov4", "source": "log", "bogus": 1}', "bogus"),
    ("{not json", "curve.json")])
def test_a_bad_import_is_exit_2_naming_the_file(results_dir, tmp_path, content, said, capsys):
    results_dir.mkdir(parents=True)
    ResultStore(f"sqlite:///{results_dir / 'zoo.db'}").close()
    path = tmp_path / "curve.json"
    path.write_text(content)
    assert main(["reference", "import", str(path), f"results_dir={results_dir}"]) == 2
    err = capsys.readouterr().err
    assert said in err and str(path) in err and "Traceback" not in err


def test_reading_without_a_store_is_exit_2_and_creates_none(tmp_path, capsys):
    assert main(["reference", "list", f"results_dir={tmp_path / 'none'}"]) == 2
    assert "no store at" in capsys.readouterr().err and not (tmp_path / "none").exists()


def test_the_short_tier_is_judged_against_the_promoted_runs_at_its_fraction(results_dir, shapes_root, tiny):
    """The short tier's job (here the stand-in's first 25%) has no curve in its config: with no
    promoted run it is MEASURED; once the full run is promoted, its metric at 25% is the target."""
    root, job = _job(results_dir, shapes_root, tiny, "night-1")
    first, _ = _run(root, job, "night-1")
    short_overrides = ["tier.compare_with=reference_curve", "tier.schedule_fraction=0.25",
                       "tier.early_check.enabled=false", "model.tiers.smoke.reference=null",
                       "model.tiers.smoke.framework_references={}"]
    overrides = ["suite=smoke", ENTRIES, "suite_id=short-1", "scheduler=inline", f"results_dir={results_dir}",
                 f"datasets.shapes.root={shapes_root}", *tiny, *STEPS, *short_overrides]
    short_root = compose_config(overrides)
    _, (short,) = plan_suite(short_root, overrides)
    assert short.target.kind == "reference_curve" and short.target.value is None
    unjudged, _ = _run(short_root, short, "short-1")
    assert unjudged["verdict"] == "MEASURED" and unjudged["steps_planned"] == 2   # 25% of 8 steps

    assert main(["reference", "promote", "1", f"results_dir={results_dir}"]) == 0
    judged, _ = _run(short_root, short, "short-2")
    target = judged["compared_with"]
    assert judged["verdict"] != "MEASURED" and target["value"] == pytest.approx(first["early_check"]["metric"])
    assert (target["low"], target["high"]) == pytest.approx((0.5 * target["value"], 1.5 * target["value"]))
    assert "1 promoted reference run(s) of the lab (ids 1)" in target["source"]
