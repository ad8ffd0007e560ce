"""Bands from calibration draws: one prediction interval used by calibrate, the loop and the verdict."""

from __future__ import annotations

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
    assert early_check_alarm(0.004) == 0.001   # the metric floor and the loss band: half each
    # the final metric band and the final loss band: half of the final share each
    assert final_check_alarm(0.004, early_enabled=True) == 0.001
    assert final_check_alarm(0.004, early_enabled=False) == 0.002


def test_the_final_loss_band_comes_from_the_final_loss_draws():
    cfg = _with_reference([])
    ref = cfg.model.tiers.smoke.reference
    with open_dict(cfg):
        ref.final_loss_draws = [3.0, 3.1, 2.9, 3.05] + [3.0] * (len(ref.draws) - 4)
    losses = list(ref.final_loss_draws)
    band = reference_band(statistics.fmean(losses), statistics.stdev(losses), len(losses), cfg.tier.false_alarm / 4)
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
    losses = list(ref.early_loss_draws)
    assert early_loss_band(cfg) == pytest.approx(
        reference_band(statistics.fmean(losses), statistics.stdev(losses), len(losses), cfg.tier.false_alarm / 4))
    assert early_loss_band(_with_reference(["tier.compare_with=none"])) is None


def _with_reference(extra: list[str]) -> object:
    return compose_config(["model=yolov4", *extra])


def test_target_for_uses_the_prediction_band_of_the_recorded_draws():
    cfg = _with_reference([])
    ref = cfg.model.tiers.smoke.reference
    target = target_for(cfg, "tiny")
    low, high = reference_band(ref.value, ref.spread, len(ref.draws), cfg.tier.false_alarm / 4)
    assert (target.low, target.high) == pytest.approx((low, high))
    assert target.kind == "reference" and target.spread == ref.spread


def test_the_loop_threshold_comes_from_the_same_function():
    cfg = _with_reference([])
    ref = cfg.model.tiers.smoke.reference
    with open_dict(cfg):
        ref.curve_spread["0.25"] = 0.4
    mean, threshold = early_reference(cfg)
    quarter = cfg.tier.false_alarm / 4   # the early check's half, shared by its metric and loss tests
    assert threshold == pytest.approx(early_threshold(ref.curve["0.25"], 0.4, len(ref.draws), quarter, "higher"))
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
    finals, earlies = [10.0, 11.0, 12.0, 13.0], [3.0, 3.5, 4.0, 4.5]
    losses, final_losses = [5.0, 5.2, 4.9, 5.1], [3.0, 3.2, 2.8, 3.1]
    measured = [{"metric": "bbox_AP", "final": f, "early": e, "early_loss": loss, "final_loss": late,
                 "label": d.label, "seed": d.seed}
                for d, f, e, loss, late in zip(draws, finals, earlies, losses, final_losses)]
    block = reference_block(cfg, measured, ["model=yolov4"], draws)
    assert block["draws"] == finals and block["labels"] == [d.label for d in draws]
    assert block["value"] == pytest.approx(11.5)
    assert block["spread"] == pytest.approx(statistics.stdev(finals), rel=1e-4)
    assert block["curve_spread"]["0.25"] == pytest.approx(statistics.stdev(earlies), rel=1e-4)
    assert "--variants default,avx2" in block["source"] and "--threads 1,2" in block["source"]
    assert "--crossed" in block["source"]
    assert block["early_loss_draws"] == losses and block["final_loss_draws"] == final_losses
    summary = draw_summary(block, 0.004, 0.25)
    assert summary["band"] == pytest.approx(list(reference_band(11.5, block["spread"], 4, 0.001)), rel=1e-4)
    assert summary["final_loss_band"] == pytest.approx(
        list(reference_band(statistics.fmean(final_losses), statistics.stdev(final_losses), 4, 0.001)), rel=1e-4)
    assert summary["early_loss_band"] == pytest.approx(
        list(reference_band(statistics.fmean(losses), statistics.stdev(losses), 4, 0.001)), rel=1e-4)
    assert isinstance(Draw(0, "avx2", 1).label, str)
