"""History over suites: series, regressions, what changed (exactly), drift (and its controls)."""

from __future__ import annotations

import random

import pytest

from replicate.history import (
    ENVIRONMENT_KEYS,
    Change,
    config_diff,
    detect_drift,
    find_regressions,
    flatten,
    metric_series,
    model_history,
    what_changed,
)
from replicate.runner.environment import PACKAGES

BAND = {"kind": "reference", "metric": "bbox_AP", "value": 20.0, "low": 15.0, "high": 25.0, "direction": "higher",
        "spread": 1.0, "source": "calibration"}
KEY = {"model": "yolov3", "variant": "tiny", "framework": "torch", "tier": "smoke", "hardware": "cpu"}
ENV = {"python": "3.11.7", "platform": "Linux-a", "torch": "2.14.1", "torchvision": "0.29.1", "ray": "2.60.0",
       "numpy": "2.4.6", "cuda": "13.0", "cudnn": 92400, "driver": None, "accelerator": "cpu",
       "git_commit": "aaa", "git_dirty": False, "config_hash": "h1", "dataset_hash": "d1"}
CONFIG = {"model": {"name": "yolov3", "tiers": {"smoke": {"data": "shapes", "recipe": {"lr": 0.004, "steps": 500}}}},
          "tier": {"name": "smoke"}, "seed": 0, "suite_id": "n1", "results_dir": "results",
          "scheduler": {"address": None}, "datasets": {"shapes": {"root": "results/data/shapes", "num_train": 256},
                                                       "coco2017": {"root": "/data/coco2017"}}}


def _group(suite_id, mean, verdict="PASS", std=None, **extra):
    return {**KEY, "suite_id": suite_id, "suite_created_at": f"2026-11-{suite_id[1:].zfill(2)}T02:00:00+00:00",
            "seeds": [0], "metric_name": "bbox_AP", "mean": mean, "std": std, "verdict": verdict,
            "compared_with": BAND, **extra}


def _job(suite_id, seed=0, environment=None, config=None):
    return {**KEY, "job_id": f"{suite_id}-s{seed}", "suite_id": suite_id, "seed": seed,
            "environment": {**ENV, **(environment or {})}, "config": config or CONFIG}


def _with(config, path, value):
    """A deep copy of ``config`` with the dotted ``path`` set to ``value``."""
    import copy

    out = copy.deepcopy(config)
    node = out
    *parents, leaf = path.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    return out


def test_the_fingerprint_comparison_covers_the_packages():
    compared = {k for keys in ENVIRONMENT_KEYS.values() for k in keys}
    assert set(PACKAGES) <= compared and {"cuda", "accelerator", "git_commit", "git_dirty", "dataset_hash"} <= compared


def test_config_diff_lists_only_differing_leaves_and_ignores_placement():
    after = _with(_with(CONFIG, "model.tiers.smoke.recipe.lr", 0.002), "suite_id", "n2")
    after = _with(_with(after, "seed", 3), "datasets.shapes.root", "/mnt/other")
    after = _with(_with(after, "datasets.coco2017.root", "/x"), "scheduler.address", "ray://head:10001")
    assert config_diff(CONFIG, after) == [("model.tiers.smoke.recipe.lr", 0.004, 0.002)]
    added = _with(CONFIG, "model.tiers.smoke.recipe", {"lr": 0.004, "steps": 500, "warmup_steps": 50})
    assert config_diff(CONFIG, added) == [("model.tiers.smoke.recipe.warmup_steps", None, 50)]
    assert flatten({"a": {"b": [1, 2], "c": {}}}) == {"a.b": [1, 2], "a.c": {}}


def test_what_changed_reports_environment_git_dataset_and_config_by_section():
    before = _job("n1")
    after = _job("n2", environment={"torch": "2.15.0", "git_commit": "bbb", "dataset_hash": "d2",
                                    "platform": "Linux-b", "config_hash": "h2"},
                 config=_with(CONFIG, "model.tiers.smoke.recipe.steps", 400))
    assert what_changed(before, after) == [
        Change("environment", "torch", "2.14.1", "2.15.0"), Change("git", "git_commit", "aaa", "bbb"),
        Change("dataset", "dataset_hash", "d1", "d2"), Change("config", "model.tiers.smoke.recipe.steps", 500, 400)]


def test_a_regression_is_a_pass_then_not_and_is_diffed_against_the_last_pass():
    groups = [_group("n1", 20.0), _group("n2", 19.0), _group("n3", 12.0, "BELOW"), _group("n4", 11.0, "BELOW")]
    jobs = [_job("n2"), _job("n2", seed=1, environment={"torch": "x"}), _job("n3", environment={"torch": "2.15.0"}),
            _job("n4", environment={"torch": "2.15.0"})]
    (now,) = find_regressions(groups, "n3", jobs)
    assert (now.last_pass_suite_id, now.newly, now.compared_jobs) == ("n2", True, ("n2-s0", "n3-s0"))
    assert now.changes == [Change("environment", "torch", "2.14.1", "2.15.0")]
    (still,) = find_regressions(groups, "n4", jobs)
    assert (still.last_pass_suite_id, still.newly) == ("n2", False)
    assert find_regressions(groups, "n2", jobs) == []
    # Never passed: a failure, but not a regression.
    assert find_regressions([_group("n1", 10.0, "BELOW"), _group("n2", 9.0, "BELOW")], "n2") == []


def test_measured_is_neither_a_pass_baseline_nor_a_regression():
    # MEASURED (nothing to compare with) proves nothing: a BELOW after it is no regression...
    measured_then_below = [_group("n1", 20.0, "MEASURED"), _group("n2", 12.0, "BELOW")]
    assert find_regressions(measured_then_below, "n2") == []
    # ... a MEASURED night after a PASS is not one either ...
    assert find_regressions([_group("n1", 20.0), _group("n2", 5.0, "MEASURED")], "n2") == []
    # ... and a MEASURED night between a PASS and a BELOW leaves the PASS as the baseline, newly broken.
    (reg,) = find_regressions([_group("n1", 20.0), _group("n2", 5.0, "MEASURED"), _group("n3", 12.0, "BELOW")], "n3")
    assert (reg.last_pass_suite_id, reg.newly) == ("n1", True)


def test_model_history_marks_regressions_per_suite():
    groups = [_group("n1", 20.0), _group("n2", 12.0, "BELOW")]
    rows = model_history(groups, [_job("n1"), _job("n2", environment={"ray": "2.61.0"})])
    assert [(r["suite_id"], r["verdict"], r["regression"]) for r in rows] == [("n1", "PASS", None),
                                                                            ("n2", "BELOW", "n1")]
    assert rows[1]["changes"] == [{"section": "environment", "key": "ray", "before": "2.60.0", "after": "2.61.0"}]


def _series(values, spread=1.0):
    band = {**BAND, "spread": spread}
    groups = [_group(f"n{i + 1}", v, compared_with=band) for i, v in enumerate(values)]
    ((key, points),) = metric_series(groups).items()
    return key, points


def test_drift_flags_a_sustained_shift_that_began_long_ago():
    # Eight nights at 20, then five at 17.5: every one still inside the band [15, 25] (PASS),
    # and the last night equals the one before - only the whole history shows the slide.
    rng = random.Random(0)
    values = [20 + rng.gauss(0, 0.5) for _ in range(8)] + [17.5 + rng.gauss(0, 0.5) for _ in range(5)]
    drift = detect_drift(*_series(values))
    assert drift is not None and drift.direction == "worse" and drift.since_suite_id == "n9"
    assert drift.recent == 5 and drift.z < -3 and drift.noise == 1.0


@pytest.mark.parametrize("seed", range(20))
def test_seed_noise_alone_is_not_drift(seed):
    rng = random.Random(seed)
    assert detect_drift(*_series([20 + rng.gauss(0, 1.0) for _ in range(15)])) is None


def test_one_bad_night_is_not_drift_and_short_histories_are_not_judged():
    assert detect_drift(*_series([20.0, 20.3, 19.8, 20.1, 19.9, 20.2, 14.0])) is None
    assert detect_drift(*_series([20.0, 20.0, 20.0, 17.0, 17.0])) is None     # 5 < 3 + 3 suites
    assert detect_drift(*_series([20.0, 20.1, 19.9, 17.0, 17.1, 16.9], spread=None)) is None   # no noise known


def test_lower_is_better_names_a_rise_worse():
    key, points = _series([0.040, 0.041, 0.040, 0.050, 0.051, 0.050], spread=0.001)
    drift = detect_drift(key, points, "lower")
    assert drift is not None and drift.direction == "worse" and drift.shift > 0


def test_a_job_that_never_started_is_not_diffed_key_by_key():
    from replicate.history import unrecorded

    before, after = _job("n1"), {**_job("n2"), "environment": {}}
    assert what_changed(before, after) == [] and unrecorded(before, after) == ["environment of job n2-s0"]


def test_diff_suites_are_each_regression_and_its_last_pass():
    from replicate.history import diff_suites

    groups = [_group("n1", 20.0), _group("n2", 20.0), _group("n3", 5.0, "BELOW"), _group("n4", 20.0),
              _group("n5", 21.0, "MEASURED")]
    assert diff_suites(groups) == ["n2", "n3"]
    # what changed is found from those suites' jobs alone
    jobs = [_job("n2"), _job("n3", environment={"torch": "2.15.0"})]
    assert [c.key for c in find_regressions(groups, "n3", jobs)[0].changes] == ["torch"]


def test_history_shows_the_newest_jobs_up_to_the_limit(tmp_path, capsys):
    import json

    from replicate.cli import main
    from replicate.store.results_store import ResultStore

    url = f"sqlite:///{tmp_path / 'zoo.db'}"
    with ResultStore(url) as store:
        for night in range(1, 8):
            store.upsert_suite(f"n{night}", "nightly", {})
            store.save_job({**_job(f"n{night}"), "verdict": "PASS", "metric_name": "bbox_AP", "metric_value": 20.0})
    args = [f"store.url='{url}'", f"results_dir={tmp_path}"]
    assert main(["history", "--limit", "3", "--json", *args]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3
    assert main(["history", "--limit", "3", *args]) == 0
    assert "newest 3 of 7 jobs; --limit 0 for all" in capsys.readouterr().out
    assert main(["history", "--limit", "0", "--json", *args]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 7
    assert main(["history", "--limit", "-1", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--limit" in err[0]
