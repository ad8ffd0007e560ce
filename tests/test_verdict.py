"""Verdicts: two-sided band, direction, seeds, early abort, infrastructure, nothing to compare with."""

from __future__ import annotations

import statistics

import pytest

from replicate.jobs import ABOVE, BELOW, EARLY_ABORT, ERROR, INFRA, MEASURED, OFF_CURVE, PASS, Failure, JobResult
from replicate.verdict import Target, judge_group, judge_job, judge_value, target_label


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
    results = [(s, JobResult(f"j{s}", metrics={"bbox_AP": v}), PASS) for s, v in enumerate([35.0, 37.0, 39.0])]
    group = judge_group(results, target)
    assert group.verdict == PASS and group.mean == pytest.approx(37.0) and group.std == pytest.approx(2.0)
    # The mean of 3 seeds has noise 2 / sqrt(3) = 1.15 > half band 0.74: it could flip between nights; say so.
    assert group.noise_note and "tighter than the measured seed noise (std 1.155)" in group.noise_note
    calm = [(s, JobResult(f"j{s}", metrics={"bbox_AP": v}), PASS) for s, v in enumerate([36.5, 37.0, 37.5])]
    assert judge_group(calm, target).noise_note is None   # 0.5 / sqrt(3) = 0.29 < 0.74


def test_group_with_an_errored_seed_is_error():
    target = claim()
    results = [(0, JobResult("a", metrics={"bbox_AP": 37.0}), PASS),
               (1, JobResult("b", failure=Failure("data pipeline", "crash", "missing file")), ERROR)]
    group = judge_group(results, target)
    assert group.verdict == ERROR and group.failure.stage == "data pipeline"
    # The failed group keeps what was measured (the leaderboard's value and trend), and says of how many seeds.
    assert group.mean == pytest.approx(37.0) and group.noise_note == "mean of the 1 of 2 seeds that measured bbox_AP"


def test_a_group_off_its_curve_keeps_its_mean_and_an_aborted_one_has_none():
    target = claim()
    off = [(s, JobResult(f"j{s}", metrics={"bbox_AP": v}), OFF_CURVE) for s, v in enumerate([36.5, 37.5])]
    group = judge_group(off, target)
    assert group.verdict == OFF_CURVE and group.mean == pytest.approx(37.0) and group.noise_note is None
    stopped = Failure("training", "accuracy below expectations", "below the 25% floor")
    aborted = [(0, JobResult("a", early_check={"aborted": True}, failure=stopped), EARLY_ABORT)]
    assert judge_group(aborted, target).mean is None


def nothing() -> Target:
    """What ``tier.compare_with=none`` gives (replicate.verdict.target_for)."""
    return Target("none", "bbox_AP", None, 0.0, "relative", "higher", "calibration run: nothing to compare with")


@pytest.mark.parametrize("measured", [0.0, -1.0, 1e-9, 37.0, 1e9, float("inf")])
def test_nothing_to_compare_with_is_measured_never_pass(measured):
    assert judge_value(measured, nothing()) == (MEASURED, None)


def test_nothing_to_compare_with_and_no_metric_is_still_an_error():
    verdict, failure = judge_job(JobResult("j", metrics={"other": 1.0}), nothing())
    assert verdict == ERROR and failure.impact == "incorrect functionality"


def test_group_with_nothing_to_compare_with_is_measured():
    results = [(s, JobResult(f"j{s}", metrics={"bbox_AP": v}), MEASURED) for s, v in enumerate([1.0, 2.0, 3.0])]
    group = judge_group(results, nothing())
    assert group.verdict == MEASURED and group.mean == pytest.approx(2.0) and group.failure is None
    crashed = results[:1] + [(1, JobResult("b", failure=Failure("training", "numerical error", "nan")), ERROR)]
    assert judge_group(crashed, nothing()).verdict == ERROR


@pytest.mark.parametrize("kind, label", [
    ("claim", "claim (paper/zoo)"), ("reference", "reference (this implementation)"),
    ("reference_curve", "reference (this implementation)"), ("none", "nothing to compare with"),
    (None, "nothing to compare with")])
def test_target_labels_never_call_a_reference_a_claim(kind, label):
    assert target_label(kind) == label


def _trained(metric: float, losses: list[float], steps: int = 8) -> JobResult:
    curve = [{"step": s + 1, "loss": loss} for s, loss in enumerate(losses)]
    return JobResult("j", metrics={"bbox_AP": metric}, curve=curve, steps_done=steps, steps_planned=steps)


def reference_with_loss_band(low: float = 0.9, high: float = 1.1) -> Target:
    return Target("reference", "bbox_AP", 20.0, 2.0, "absolute", "higher", "calibration", loss_band=(low, high))


def test_a_metric_in_its_band_with_a_loss_off_the_draws_is_off_curve():
    """The loss judged is the mean over the last quarter of the schedule (steps 7 and 8 of 8)."""
    target = reference_with_loss_band()
    healthy = _trained(20.5, [9.0, 5.0, 3.0, 2.0, 1.5, 1.2, 1.0, 1.05])
    assert judge_job(healthy, target) == (PASS, None)
    # the same metric, but a loss that settled far below every healthy draw's (a dropped loss term)
    verdict, failure = judge_job(_trained(20.5, [9.0, 5.0, 3.0, 2.0, 1.5, 1.2, 0.4, 0.42]), target)
    assert verdict == OFF_CURVE and failure.stage == "training"
    assert "0.41" in failure.message and "[0.9, 1.1]" in failure.message
    # early losses do not count: only the last quarter is judged
    assert judge_job(_trained(20.5, [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 1.0, 1.0]), target)[0] == PASS


def test_the_metric_verdict_comes_before_the_loss():
    target = reference_with_loss_band()
    assert judge_job(_trained(10.0, [1.0] * 6 + [5.0, 5.0]), target)[0] == BELOW
    # a job that did not train to its end, or a target without a loss band, is judged on its metric
    unfinished = JobResult("j", metrics={"bbox_AP": 20.0}, curve=[{"step": 1, "loss": 5.0}], steps_done=1,
                           steps_planned=8)
    assert judge_job(unfinished, target)[0] == PASS
    no_band = Target("reference", "bbox_AP", 20.0, 2.0, "absolute", "higher", "calibration")
    assert judge_job(_trained(20.0, [5.0] * 8), no_band)[0] == PASS


def test_an_off_curve_seed_decides_its_group():
    target = reference_with_loss_band()
    results = [(0, _trained(20.0, [1.0] * 8), PASS), (1, _trained(20.0, [3.0] * 8), OFF_CURVE)]
    group = judge_group(results, target)
    assert group.verdict == OFF_CURVE and "training loss" in group.failure.message


def test_every_claim_of_the_tier_is_judged_and_a_missed_mask_ap_decides():
    """Mask R-CNN's eval tier: box AP in its band is not enough; the mask AP claim on the same
    split is judged too. A miss on a tier that did not train is the evaluation's failure."""
    from replicate.config.compose import compose_config
    from replicate.verdict import target_for

    target = target_for(compose_config(["model=mask_rcnn", "tier=eval"]), "full")
    assert (target.metric, target.value) == ("bbox_AP", 37.9) and not target.trained
    (mask,) = target.also
    assert (mask.metric, mask.value, mask.split) == ("segm_AP", 34.6, "val2017")   # not minival2014's 33.6
    both = JobResult("j", metrics={"bbox_AP": 37.9, "segm_AP": 34.5})
    assert judge_job(both, target) == (PASS, None)
    verdict, failure = judge_job(JobResult("j", metrics={"bbox_AP": 37.9, "segm_AP": 30.0}), target)
    assert verdict == BELOW and failure.stage == "evaluation" and failure.message.startswith("segm_AP 30")
    verdict, failure = judge_job(JobResult("j", metrics={"bbox_AP": 37.9}), target)
    assert verdict == ERROR and "'segm_AP' was not produced" in failure.message
    group = judge_group([(0, JobResult("a", metrics={"bbox_AP": 37.9, "segm_AP": 31.0}), PASS),
                         (1, JobResult("b", metrics={"bbox_AP": 37.9, "segm_AP": 31.4}), PASS)], target)
    assert group.verdict == BELOW and "segm_AP 31.2" in group.failure.message
    assert Target.from_dict(target.to_dict()) == target      # stored with the job, read back whole


def test_claims_at_another_resolution_are_not_judged_beside_the_primary():
    """yolov3's AP50 claims on test-dev are at 608 and 416: only the one at the tier's size."""
    from replicate.config.compose import compose_config
    from replicate.verdict import claim_on, other_claims

    claims = compose_config(["model=yolov3"]).model.claims
    primary = claim_on(claims, "full", "test-dev2017")
    assert [(c.metric, c.value) for c in other_claims(claims, primary, "full", 608)] == [("bbox_AP50", 57.9)]
    assert [(c.metric, c.value) for c in other_claims(claims, primary, "full", 416)] == [("bbox_AP50", 55.3)]


def test_a_training_tiers_miss_is_the_trainings():
    target = Target("claim", "bbox_AP", 37.0, 0.02, "relative", "higher", "x", trained=True)
    assert judge_value(30.0, target)[1].stage == "training"



def _reference(draws: list[float], false_alarm: float = 0.001) -> Target:
    from replicate.verdict import draws_band

    band = draws_band(draws, false_alarm)
    mean = statistics.fmean(draws)
    return Target("reference", "bbox_AP", mean, band[1] - mean, "absolute", "higher", "calibration draws",
                  band=band, draws=draws, false_alarm=false_alarm)


DRAWS = [24.7, 27.1, 29.6, 24.1, 33.0, 20.4, 23.5, 24.1, 27.8, 28.8, 22.9, 25.2]   # centernet's smoke draws


def test_a_mean_of_seeds_is_judged_against_the_band_of_such_a_mean():
    """Three seeds whose mean sits inside one seed's band but outside the band of a mean of three
    (a defect costing about a third: centernet's band is wide) fail; three healthy draws pass; the
    note says how it was judged."""
    from replicate.verdict import draws_band, seed_mean

    target = _reference(DRAWS)
    one, three = target.band, draws_band(DRAWS, 0.001, of_mean=3)
    assert three[0] > one[0] and three[1] < one[1]   # narrower on both sides
    low = [0.65 * v for v in (25.0, 26.0, 27.0)]       # 35% below the reference's mean
    assert one[0] < statistics.fmean(low) < three[0]
    broken = judge_group([(s, JobResult(f"j{s}", metrics={"bbox_AP": v}), PASS) for s, v in enumerate(low)], target)
    assert broken.verdict == BELOW and broken.band == pytest.approx(three)
    assert "judged on the 3 seeds' geometric mean" in broken.noise_note
    healthy = [(s, JobResult(f"j{s}", metrics={"bbox_AP": v}), PASS) for s, v in enumerate(DRAWS[:3])]
    passed = judge_group(healthy, target)
    assert passed.verdict == PASS and seed_mean(DRAWS[:3], DRAWS) == pytest.approx(
        statistics.geometric_mean(DRAWS[:3]))
    single = judge_group([(0, JobResult("j", metrics={"bbox_AP": low[0]}), PASS)], target)
    assert single.verdict == PASS and single.band == pytest.approx(one)   # one seed: one draw's band


def test_a_metric_the_tier_also_judges_decides_when_it_leaves_its_band():
    """pix2pix's smoke tier: L1 in its band is not enough; the layout score is judged beside it,
    against the band of its own calibration draws, with its share of the false-alarm budget."""
    from replicate.config.compose import compose_config
    from replicate.verdict import draws_band, final_false_alarm, target_for

    cfg = compose_config(["model=pix2pix"])
    target = target_for(cfg, "small")
    (layout,) = target.also
    recorded = cfg.model.tiers.smoke.reference.also.layout_class_iou
    assert layout.metric == "layout_class_iou" and layout.direction == "higher"
    assert layout.band == draws_band(recorded.draws, final_false_alarm(cfg))
    assert final_false_alarm(cfg) == cfg.tier.false_alarm / 2 / 3   # L1, the loss and the layout score
    healthy = {"L1": target.value, "layout_class_iou": layout.value}
    assert judge_job(JobResult("j", metrics=healthy), target)[0] == PASS
    verdict, failure = judge_job(JobResult("j", metrics={**healthy, "layout_class_iou": layout.low * 0.99}), target)
    assert verdict == BELOW and failure.message.startswith("layout_class_iou")
    verdict, failure = judge_job(JobResult("j", metrics={"L1": target.value}), target)
    assert verdict == ERROR and "'layout_class_iou' was not produced" in failure.message
    assert Target.from_dict(target.to_dict()) == target


LAYOUT_DRAWS = "model.tiers.smoke.reference.also.layout_class_iou"


@pytest.mark.parametrize("override, key", [
    ("+model.tiers.smoke.also_judged.layout_per_class_acc=higher",
     "model.tiers.smoke.reference.also.layout_per_class_acc"),
    ("model.tiers.smoke.also_judged.layout_class_iou=lower", f"{LAYOUT_DRAWS}.direction"),
    ("model.tiers.smoke.also_judged.layout_class_iou=sideways", "model.tiers.smoke.also_judged.layout_class_iou"),
    (f"{LAYOUT_DRAWS}.draws=[0.9,0.9]", f"{LAYOUT_DRAWS}.draws"),
])
def test_a_metric_judged_without_its_draws_is_refused(override, key):
    from replicate.config.compose import compose_config
    from replicate.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        compose_config(["model=pix2pix", override])
    assert caught.value.key == key


def test_a_calibration_run_may_measure_before_the_draws_exist():
    from replicate.config.compose import compose_config

    compose_config(["model=pix2pix", "tier.compare_with=none",
                    "+model.tiers.smoke.also_judged.layout_per_class_acc=higher"])
