"""Verdicts: two-sided band, direction, seeds, early abort, infrastructure."""

from __future__ import annotations

import pytest

from replicate.jobs import ABOVE, BELOW, EARLY_ABORT, ERROR, INFRA, PASS, Failure, JobResult
from replicate.verdict import Target, judge_group, judge_job, judge_value


def claim(value=37.0, tolerance=0.02, kind="relative", direction="higher") -> Target:
    return Target("claim", "bbox_AP", value, tolerance, kind, direction, "torchvision COCO_V1")


@pytest.mark.parametrize("measured, expected", [
    (37.0, PASS), (36.27, PASS), (37.73, PASS), (36.2, BELOW), (37.8, ABOVE), (0.0, BELOW)])
def test_relative_band_is_two_sided(measured, expected):
    verdict, failure = judge_value(measured, claim())
    assert verdict == expected
    assert (failure is None) == (expected == PASS)


def test_far_above_is_flagged_as_incorrect_functionality_not_accuracy():
    verdict, failure = judge_value(45.0, claim())
    assert verdict == ABOVE
    assert (failure.stage, failure.impact) == ("evaluation", "incorrect functionality")


def test_below_is_accuracy_below_expectations():
    verdict, failure = judge_value(30.0, claim())
    assert (verdict, failure.stage, failure.impact) == (BELOW, "training", "accuracy below expectations")


def test_absolute_tolerance_and_lower_is_better():
    target = claim(value=0.10, tolerance=0.02, kind="absolute", direction="lower")
    assert judge_value(0.115, target)[0] == PASS
    verdict, failure = judge_value(0.13, target)  # higher L1 is worse
    assert verdict == ABOVE and failure.impact == "accuracy below expectations"
    verdict, failure = judge_value(0.05, target)  # suspiciously good
    assert verdict == BELOW and failure.impact == "incorrect functionality"


def test_job_outcomes_take_precedence_in_order():
    target = claim()
    crashed = JobResult("j", failure=Failure("training", "numerical error", "loss is nan"))
    assert judge_job(crashed, target)[0] == ERROR
    infra = JobResult("j", infra=True, failure=Failure("infrastructure", "crash", "node died"))
    assert judge_job(infra, target)[0] == INFRA
    early = JobResult("j", metrics={"bbox_AP": 1.0}, early_check={
        "aborted": True, "metric": 1.0, "fraction": 0.25, "threshold": 10.0, "reference": 20.0})
    verdict, failure = judge_job(early, target)
    assert verdict == EARLY_ABORT and failure.impact == "accuracy below expectations"
    missing = JobResult("j", metrics={"other": 1.0})
    assert judge_job(missing, target)[0] == ERROR


def test_group_uses_the_mean_and_records_the_spread():
    target = claim()
    results = [(s, JobResult(f"j{s}", metrics={"bbox_AP": v}), PASS) for s, v in enumerate([36.0, 37.0, 38.0])]
    group = judge_group(results, target)
    assert group.verdict == PASS and group.mean == pytest.approx(37.0) and group.std == pytest.approx(1.0)
    # std 1.0 > half band 0.74: the verdict could flip between nights; say so.
    assert group.noise_note and "tighter than the measured seed noise" in group.noise_note


def test_group_with_an_errored_seed_is_error():
    target = claim()
    results = [(0, JobResult("a", metrics={"bbox_AP": 37.0}), PASS),
               (1, JobResult("b", failure=Failure("data pipeline", "crash", "missing file")), ERROR)]
    group = judge_group(results, target)
    assert group.verdict == ERROR and group.failure.stage == "data pipeline"
