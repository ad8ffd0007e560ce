"""Bands from calibration draws: one prediction interval used by calibrate, the loop and the verdict."""

from __future__ import annotations

import math
import random
import statistics

import pytest
from omegaconf import open_dict

from replicate.calibrate import Draw, draw_summary, plan_draws, reference_block
from replicate.config.compose import compose_config
from replicate.verdict import (
    MIN_HALF_WIDTH,
    early_check_alarm,
    early_loss_band,
    early_reference,
    early_threshold,
    false_alarm_split,
    final_check_alarm,
    final_loss_band,
    prediction_half_width,
    reference_band,
    target_for,
)


def test_the_half_width_is_the_student_t_prediction_interval():
    # t(0.99875, 11) = 3.8945 (scipy), sqrt(1 + 1/12) = 1.0408
    assert prediction_half_width(1.0, 12, 0.0025) == pytest.approx(3.8945 * 1.0408, rel=1e-3)
    # one-sided at the same rate is narrower than two-sided
    assert prediction_half_width(1.0, 12, 0.0025, sides=1) < prediction_half_width(1.0, 12, 0.0025)
    # fewer draws, wider band: the uncertainty of the mean and std is paid for
    assert prediction_half_width(1.0, 3, 0.0025) > 5 * prediction_half_width(1.0, 12, 0.0025)


def test_a_band_needs_two_draws():
    with pytest.raises(ValueError):
        prediction_half_width(1.0, 1, 0.01)


def test_the_false_alarm_rate_of_the_band_holds_for_normal_draws():
    """Simulated: draw 12, build the band, draw one more; it falls outside at about the stated rate."""
    rng = random.Random(0)
    alarm, trials, outside = 0.05, 4000, 0
    for _ in range(trials):
        draws = [rng.gauss(10, 1) for _ in range(12)]
        low, high = reference_band(statistics.fmean(draws), statistics.stdev(draws), 12, alarm)
        outside += not low <= rng.gauss(10, 1) <= high
    assert outside / trials == pytest.approx(alarm, abs=0.015)


def test_a_band_is_never_narrower_than_the_floor():
    low, high = reference_band(20.0, 0.0, 12, 0.0025)
    assert (low, high) == pytest.approx((20 - 20 * MIN_HALF_WIDTH, 20 + 20 * MIN_HALF_WIDTH))


def test_the_early_threshold_is_on_the_worse_side():
    assert early_threshold(5.0, 0.5, 12, 0.0025, "higher") < 5.0
    assert early_threshold(0.05, 0.001, 12, 0.0025, "lower") > 0.05


def test_the_budget_is_split_between_the_early_check_and_the_band():
    assert false_alarm_split(0.004, early_enabled=True) == (0.002, 0.002)
    assert false_alarm_split(0.004, early_enabled=False) == (0.0, 0.004)
    # the metric floor, the loss band and the weight-drift band: a third each
    assert early_check_alarm(0.004) == pytest.approx(0.002 / 3)
    # the final metric band and the final loss band: half of the final share each
    assert final_check_alarm(0.004, early_enabled=True) == 0.001
    assert final_check_alarm(0.004, early_enabled=False) == 0.002


def test_the_final_loss_band_comes_from_the_final_loss_draws():
    cfg = _with_reference([])
    ref = cfg.model.tiers.smoke.reference
    with open_dict(cfg):
        ref.final_loss_draws = [3.0, 3.1, 2.9, 3.05] + [3.0] * (len(ref.draws) - 4)
    band = _log_band(list(ref.final_loss_draws), cfg.tier.false_alarm / 4)
    assert final_loss_band(cfg) == pytest.approx(band)
    assert target_for(cfg, "tiny").loss_band == pytest.approx(band)
    with open_dict(cfg):
        ref.final_loss_draws = []
    assert final_loss_band(cfg) is None and target_for(cfg, "tiny").loss_band is None


def test_the_early_loss_band_comes_from_the_loss_draws():
    cfg = _with_reference([])
    ref = cfg.model.tiers.smoke.reference
    with open_dict(cfg):
        ref.early_loss_draws = [5.0, 5.2, 4.9, 5.1] + [5.0] * (len(ref.draws) - 4)
    assert early_loss_band(cfg) == pytest.approx(_log_band(list(ref.early_loss_draws), cfg.tier.false_alarm / 6))
    assert early_loss_band(_with_reference(["tier.compare_with=none"])) is None


def _with_reference(extra: list[str]) -> object:
    return compose_config(["model=yolov4", *extra])


def _log_band(draws: list[float], false_alarm: float, sides: int = 2) -> tuple[float, float]:
    """The prediction interval on the log scale, written out: exp(mean +- t * std * sqrt(1 + 1/n))."""
    from scipy.stats import t

    logs = [math.log(v) for v in draws]
    n = len(logs)
    half = t.ppf(1 - false_alarm / sides, n - 1) * statistics.stdev(logs) * (1 + 1 / n) ** 0.5
    return math.exp(statistics.fmean(logs) - half), math.exp(statistics.fmean(logs) + half)


def test_positive_draws_get_a_band_on_the_log_scale_and_others_a_normal_one():
    from replicate.verdict import draws_band, draws_bound

    early = [1.95, 2.43, 3.43, 1.54, 2.5, 2.26, 2.82, 2.07, 1.89, 3.37, 1.2, 2.96]   # yolov4's 25% AP, rounded
    low, high = draws_band(early, 0.001)
    assert (low, high) == pytest.approx(_log_band(early, 0.001))
    assert 0 < low < min(early) and high > max(early)
    # the normal band of the same draws reaches below zero: a floor no AP can fall under
    assert reference_band(statistics.fmean(early), statistics.stdev(early), 12, 0.001)[0] < 0
    # the 25% floor is the normal bound (a young AP's left tail is heavier than the log scale's);
    # at or below zero no AP can cross it: not judged, rather than a test that cannot fail
    assert draws_bound(early, 0.001, "higher") is None
    tight = [2.0, 2.1, 1.9, 2.05, 1.95, 2.0]
    normal = reference_band(statistics.fmean(tight), statistics.stdev(tight), 6, 0.002)
    assert draws_bound(tight, 0.001, "higher") == pytest.approx(normal[0])
    assert draws_bound(early, 0.001, "lower") == pytest.approx(
        reference_band(statistics.fmean(early), statistics.stdev(early), 12, 0.002)[1])
    signed = [-1.0, 0.5, 1.0, 2.0]
    assert draws_band(signed, 0.01) == pytest.approx(
        reference_band(statistics.fmean(signed), statistics.stdev(signed), 4, 0.01))
    assert draws_band([1.0], 0.01) is None and draws_bound([], 0.01, "higher") is None


def test_target_for_uses_the_prediction_band_of_the_recorded_draws():
    cfg = _with_reference([])
    ref = cfg.model.tiers.smoke.reference
    target = target_for(cfg, "tiny")
    assert (target.low, target.high) == pytest.approx(_log_band(list(ref.draws), cfg.tier.false_alarm / 4))
    assert target.kind == "reference" and target.spread == ref.spread


def test_the_loop_threshold_comes_from_the_same_function():
    cfg = _with_reference([])
    ref = cfg.model.tiers.smoke.reference
    share = cfg.tier.false_alarm / 6   # the early check's half, shared by its metric, loss and drift tests
    # yolov4's recorded 25% draws: their normal floor is below zero, so the 25% metric is not judged
    assert early_reference(cfg) is None
    with open_dict(cfg):
        ref.early_draws = [2.0, 2.1, 1.9, 2.05, 1.95, 2.0] * 2
    mean, threshold = early_reference(cfg)
    draws = list(ref.early_draws)
    assert threshold == pytest.approx(
        early_threshold(statistics.fmean(draws), statistics.stdev(draws), len(draws), share, "higher"))
    # a reference recorded without its 25% draws: the normal bound of the curve's mean and spread
    with open_dict(cfg):
        ref.curve_spread["0.25"] = 0.4
        ref.early_draws = []
    mean, threshold = early_reference(cfg)
    assert threshold == pytest.approx(early_threshold(ref.curve["0.25"], 0.4, len(ref.draws), share, "higher"))
    # no early check: nothing to judge at 25%
    assert early_reference(_with_reference(["tier.early_check.enabled=false"])) is None


def test_more_false_alarm_budget_narrows_the_band():
    narrow = target_for(_with_reference(["tier.false_alarm=0.1"]), "tiny")
    wide = target_for(_with_reference(["tier.false_alarm=0.001"]), "tiny")
    assert wide.low < narrow.low and wide.high > narrow.high


@pytest.mark.parametrize("seeds, variants, crossed", [([0, 1, 2, 3], ["default", "avx2", "avx512"], True),
                                                      ([0, 1, 2, 3, 4, 5], ["onednn0", "onednn1"], True),
                                                      (list(range(12)), ["default", "avx2", "avx512"], False),
                                                      (list(range(12)), ["onednn0", "onednn1"], False)])
def test_draws_span_every_variant_with_threads_alternating(seeds, variants, crossed):
    """An even number of variants must not tie a variant to one thread count."""
    draws = plan_draws(seeds, variants, [1, 2], crossed=crossed)
    assert len(draws) == 12 and len({d.label for d in draws}) == 12
    for variant in variants:
        assert {d.threads for d in draws if d.variant == variant} == {1, 2}
    if not crossed:   # each draw its own seed, the variants in equal shares
        assert [d.seed for d in draws] == seeds
        assert {sum(d.variant == v for d in draws) for v in variants} == {12 // len(variants)}


def test_the_recorded_block_has_every_draw_and_implies_the_verdicts_band():
    cfg = compose_config(["model=yolov4", "tier.compare_with=none"])
    draws = plan_draws([0, 1], ["default", "avx2"], [1, 2], crossed=True)
    finals, earlies = [10.0, 11.0, 12.0, 13.0], [4.0, 4.1, 3.9, 4.05]
    losses, final_losses, drifts = [5.0, 5.2, 4.9, 5.1], [3.0, 3.2, 2.8, 3.1], [0.30, 0.32, 0.31, 0.33]
    measured = [{"metric": "bbox_AP", "final": f, "early": e, "early_loss": loss, "final_loss": late,
                 "early_drift": drift, "label": d.label, "seed": d.seed}
                for d, f, e, loss, late, drift in zip(draws, finals, earlies, losses, final_losses, drifts)]
    block = reference_block(cfg, measured, ["model=yolov4"], draws)
    assert block["draws"] == finals and block["labels"] == [d.label for d in draws]
    assert block["value"] == pytest.approx(11.5)
    assert block["spread"] == pytest.approx(statistics.stdev(finals), rel=1e-4)
    assert block["curve_spread"]["0.25"] == pytest.approx(statistics.stdev(earlies), rel=1e-4)
    assert "--variants default,avx2" in block["source"] and "--threads 1,2" in block["source"]
    assert "--crossed" in block["source"]
    assert block["early_loss_draws"] == losses and block["final_loss_draws"] == final_losses
    assert block["early_drift_draws"] == drifts
    summary = draw_summary(block, 0.004, 0.25)
    assert summary["band"] == pytest.approx(list(_log_band(finals, 0.001)), rel=1e-4)
    assert summary["final_loss_band"] == pytest.approx(list(_log_band(final_losses, 0.001)), rel=1e-4)
    assert summary["early_loss_band"] == pytest.approx(list(_log_band(losses, 0.004 / 6)), rel=1e-4)
    assert summary["early_drift_band"] == pytest.approx(list(_log_band(drifts, 0.004 / 6)), rel=1e-4)
    normal = reference_band(statistics.fmean(earlies), statistics.stdev(earlies), 4, 0.004 / 3)
    assert summary["early_floor"] == pytest.approx(normal[0], rel=1e-4)
    assert isinstance(Draw(0, "avx2", 1).label, str)


def test_the_weight_drift_is_the_distance_from_the_start_relative_to_its_norm():
    import torch

    from replicate.verdict import weight_drift

    start = [torch.tensor([3.0, 0.0]), torch.tensor([[0.0], [4.0]])]   # norm 5
    now = [torch.tensor([3.0, 1.0]), torch.tensor([[0.0], [4.0]])]     # moved by 1
    assert weight_drift(now, start) == pytest.approx(0.2)
    assert weight_drift(start, start) == 0.0
    with pytest.raises(ValueError, match="1 trainable tensors now, 2 at the start"):
        weight_drift(now[:1], start)


def test_the_early_drift_band_comes_from_the_drift_draws():
    from replicate.verdict import draws_band, early_drift_band, early_false_alarm

    cfg = compose_config(["model=yolov4"])
    ref = cfg.model.tiers.smoke.reference
    with open_dict(cfg):
        ref.early_drift_draws = [0.30, 0.31, 0.32, 0.33] + [0.31] * (len(ref.draws) - 4)
    assert early_drift_band(cfg) == draws_band(list(ref.early_drift_draws), early_false_alarm(cfg))
    with open_dict(cfg):
        ref.early_drift_draws = []
    assert early_drift_band(cfg) is None
