"""Verdicts: measured metric vs the claim or reference, a two-sided tolerance band, seeds.

Far above the band is flagged too: a wrong split or a train/val leak looks like that. A job with
nothing to compare with is MEASURED, never PASS: a verdict that cannot fail is no verdict.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Sequence

from omegaconf import DictConfig

from replicate.config.schema import Direction
from replicate.config.selection import chosen_reference, model_tier
from replicate.jobs import ABOVE, BELOW, EARLY_ABORT, ERROR, INFRA, MEASURED, OFF_CURVE, PASS, Failure, JobResult
from replicate.precision import chosen_precision, declared_deviations

# What people read for each target kind. A smoke reference is a measurement of this very
# implementation, not anyone's claim: calling it a claim would overstate what a PASS proves.
TARGET_LABELS = {
    "claim": "claim (paper/zoo)",
    "reference": "reference (this implementation)",
    "reference_curve": "reference (this implementation)",
    "none": "nothing to compare with",
}


def target_label(kind: Optional[str]) -> str:
    """The display label of a target kind (``Target.kind``, or ``compared_with["kind"]`` of a
    stored row); the one place every table, the report and W&B take it from."""
    return TARGET_LABELS.get(kind or "none", str(kind))


@dataclass
class Target:
    """What a job's metric is compared with, and the band around it."""

    kind: str            # claim | reference | reference_curve | none
    metric: Optional[str]
    value: Optional[float]
    tolerance: float
    tolerance_kind: str  # relative | absolute
    direction: str       # higher | lower
    source: str
    split: Optional[str] = None
    spread: Optional[float] = None   # measured seed noise (reference only)
    # The band of the mean training loss over the last quarter of the schedule (final_loss), from
    # the calibration draws (reference only): a metric inside its band with a loss outside this
    # one means the training is not the reference's (OFF_CURVE).
    loss_band: Optional[tuple[float, float]] = None
    # A reference's band from its draws (``draws_band``: on the log scale, so not symmetric about
    # the mean); without it the band is value +- tolerance.
    band: Optional[tuple[float, float]] = None
    # A claim's tier: what it does differently from the reference implementation (shown beside
    # the verdict: a BELOW may be the deviation's, not the replication's).
    deviations: Optional[list[str]] = None
    # Whether the job trained: a miss of a tier that only evaluates (released weights) is the
    # evaluation's failure, not the training's.
    trained: bool = True
    # The tier's other claims on the same split (Mask R-CNN's mask AP beside its box AP), or a
    # reference's ``also_judged`` metrics (pix2pix's layout score): each is judged too, and the
    # first one missed decides the verdict.
    also: list["Target"] = field(default_factory=list)
    # What the instrument must measure on the same split (pix2pix: the paper's FCN on the real
    # photos): a miss makes the job INFRA (uncalibrated instrument) before the claim is judged.
    instrument: list["Target"] = field(default_factory=list)
    # A reference's calibration draws and the final verdict's false-alarm share: a suite's mean of
    # several seeds is judged against the band of such a mean (``draws_band(of_mean=k)``).
    draws: Optional[list[float]] = None
    false_alarm: Optional[float] = None

    @property
    def low(self) -> Optional[float]:
        if self.value is None:
            return None
        if self.band is not None:
            return self.band[0]
        return self.value * (1 - self.tolerance) if self.tolerance_kind == "relative" else self.value - self.tolerance

    @property
    def high(self) -> Optional[float]:
        if self.value is None:
            return None
        if self.band is not None:
            return self.band[1]
        return self.value * (1 + self.tolerance) if self.tolerance_kind == "relative" else self.value + self.tolerance

    def contains(self, value: float) -> bool:
        low, high = self.low, self.high
        return low is not None and high is not None and low <= value <= high

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "low": self.low, "high": self.high}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Target":
        """The Target of :meth:`to_dict` (``low``/``high`` are derived, so left out)."""
        kept = {k: v for k, v in data.items() if k not in ("low", "high")}
        for key in ("loss_band", "band"):
            if kept.get(key) is not None:
                kept[key] = tuple(kept[key])
        kept["also"] = [cls.from_dict(other) for other in kept.get("also") or []]
        kept["instrument"] = [cls.from_dict(other) for other in kept.get("instrument") or []]
        return cls(**kept)


def target_for(cfg: DictConfig, variant: str) -> Target:
    """The comparison target of a job: the tier says claim, reference or reference curve.

    A reference's band is the prediction interval of its calibration draws (``reference_band``);
    a claim's band is the lab's tolerance around the published number.
    """
    tier = model_tier(cfg)
    kind = cfg.tier.compare_with
    reference = chosen_reference(cfg)
    if kind == "reference_curve" and (reference is None or str(cfg.tier.schedule_fraction) not in reference.curve):
        # No curve in the config: the lab's promoted reference runs give it when the job is
        # scheduled (replicate/reference_runs.py); with none the job is MEASURED.
        primary = next(c for c in cfg.model.claims if c.primary)
        return Target("reference_curve", primary.metric, None, 0.0, "relative", primary.direction,
                      "no promoted reference run of this recipe (replicate reference list)",
                      split=tier.eval_split)
    if kind in ("reference", "reference_curve"):
        ref = reference
        assert ref is not None   # validation refuses compare_with=reference without one
        point = "final" if kind == "reference" else str(cfg.tier.schedule_fraction)
        mean, std = reference_point(ref, point)
        band = draws_band(ref.draws, final_false_alarm(cfg)) if kind == "reference" else None
        low, high = band or reference_band(mean, std, reference_draws(ref), final_false_alarm(cfg))
        return Target(kind, ref.metric, mean, high - mean, "absolute", ref.direction,
                      ref.source, split=tier.eval_split, spread=std,
                      loss_band=final_loss_band(cfg) if kind == "reference" else None, band=(low, high),
                      draws=[float(v) for v in ref.draws] if kind == "reference" and band is not None else None,
                      false_alarm=final_false_alarm(cfg) if kind == "reference" and band is not None else None,
                      also=also_judged_targets(cfg, ref) if kind == "reference" else [])
    if kind == "claim":
        claim = select_claim(cfg, variant, tier.claim_split)
        trained = bool(cfg.tier.trains)
        def judged(c: Any) -> Target:
            return Target("claim", c.metric, float(c.value), float(c.tolerance), c.tolerance_kind, c.direction,
                          c.source, split=c.split, trained=trained)

        return Target("claim", claim.metric, float(claim.value), float(claim.tolerance), claim.tolerance_kind,
                      claim.direction, claim.source, split=claim.split,
                      deviations=declared_deviations(tier.deviations, chosen_precision(cfg)), trained=trained,
                      also=[judged(c) for c in other_claims(cfg.model.claims, claim, variant, int(tier.input_size))],
                      instrument=[judged(c) for c in instrument_claims(cfg.model.claims, claim.split, variant)])
    primary = next(c for c in cfg.model.claims if c.primary)
    return Target("none", primary.metric if reference is None else reference.metric, None, 0.0,
                  "relative", primary.direction, "calibration run: nothing to compare with")


def also_judged_targets(cfg: DictConfig, ref: Any) -> list[Target]:
    """The tier's ``also_judged`` metrics, each against the band of its own calibration draws
    (``reference.also``), at the same false-alarm share as the primary metric's band."""
    tier = model_tier(cfg)
    alarm = final_false_alarm(cfg)
    found = []
    for metric, direction in tier.also_judged.items():
        recorded = ref.also.get(metric)
        band = draws_band(recorded.draws, alarm) if recorded is not None else None
        if band is None:   # validation refuses a judged job without the draws
            continue
        draws = [float(v) for v in recorded.draws]
        mean = statistics.fmean(draws)
        found.append(Target("reference", str(metric), mean, band[1] - mean, "absolute", str(direction), ref.source,
                            split=tier.eval_split, spread=statistics.stdev(draws), band=band, draws=draws,
                            false_alarm=alarm))
    return found


# ----------------------------------------------------------------- bands from calibration draws
# The false-alarm budget of one job (tier.false_alarm) is split evenly between the early check
# (three tests: loss, weight drift, metric) and the final verdict (two: metric, loss), each test
# with an equal part of its share, so a healthy job is flagged by any of the five with probability
# at most tier.false_alarm.
MIN_HALF_WIDTH = 0.01   # relative to the mean: a band never narrower than 1%, however tight the draws


def false_alarm_split(total: float, *, early_enabled: bool) -> tuple[float, float]:
    """(early check, final band) shares of a job's false-alarm budget."""
    return (total / 2, total / 2) if early_enabled else (0.0, total)


# The final verdict judges the metric against its band and the training loss of the schedule's
# last quarter against the draws' loss band, each with an equal part of the final share, and so
# each metric the tier's ``also_judged`` adds (pix2pix's layout score).
FINAL_CHECKS = 2


def final_check_alarm(total: float, *, early_enabled: bool, also: int = 0) -> float:
    """The share of a job's budget ``total`` for each of the final verdict's tests (two, and
    ``also`` more)."""
    return false_alarm_split(total, early_enabled=early_enabled)[1] / (FINAL_CHECKS + also)


def final_false_alarm(cfg: DictConfig) -> float:
    return final_check_alarm(cfg.tier.false_alarm, early_enabled=cfg.tier.early_check.enabled,
                             also=len(model_tier(cfg).also_judged))


# The early check judges three things, each with a third of its share: the metric against its
# floor; the training loss against its two-sided band (a loss far from every healthy draw, higher
# or lower, says the training differs: a learning rate, a loss weight, a dropped term, bad
# targets); and how far the weights have moved from their initial values against its band (the
# optimizer's footprint: a learning rate, momentum or init off, frozen layers, whatever the loss
# hides).
EARLY_CHECKS = 3


def early_check_alarm(total: float) -> float:
    """The share of a job's budget ``total`` for each of the early check's two tests."""
    return false_alarm_split(total, early_enabled=True)[0] / EARLY_CHECKS


def early_false_alarm(cfg: DictConfig) -> float:
    return early_check_alarm(cfg.tier.false_alarm)


# Fewer draws than this and the t quantile explodes (t(0.999, 2) = 22): a band so wide that the
# verdict cannot fail. validate.py refuses such a reference; calibrate warns below MIN_DRAWS.
MIN_REFERENCE_DRAWS = 6


def reference_draws(ref: Any) -> int:
    """How many calibration draws the reference's mean and spread come from."""
    return len(ref.draws)


def reference_point(ref: Any, point: str) -> tuple[float, float]:
    """(mean, std) of the reference at ``point``: "final" or a fraction of the schedule ("0.25")."""
    if point == "final":
        return float(ref.value), float(ref.spread)
    return float(ref.curve[point]), float(ref.curve_spread.get(point, 0.0))


def prediction_half_width(std: float, n: int, false_alarm: float, *, sides: int = 2, of_mean: int = 1) -> float:
    """Half-width of a normal prediction interval for ONE new draw (or the mean of ``of_mean`` new
    draws: a suite's seeds), from ``n`` past draws.

    t quantile (Student, n - 1 degrees of freedom) x std x sqrt(1/of_mean + 1/n): a new draw (or
    mean) falls outside with probability ``false_alarm`` when draws are normal (the band is not
    the reference mean's confidence interval, which would shrink with n and flag healthy runs).
    """
    from scipy.stats import t

    if n < 2:
        raise ValueError(f"a prediction interval needs at least 2 draws, got {n}")
    if of_mean < 1:
        raise ValueError(f"a mean of {of_mean} draws")
    quantile = t.ppf(1 - false_alarm / sides, n - 1)
    return float(quantile * std * (1 / of_mean + 1 / n) ** 0.5)


def draws_band(draws: Any, false_alarm: float, *, sides: int = 2,
               log_scale: bool = True, of_mean: int = 1) -> Optional[tuple[float, float]]:
    """The band one new draw of a healthy implementation falls in, from recorded ``draws``; None
    with fewer than 2 draws. Every band built from calibration draws is this one computation: the
    final metric's, the 25% floor (``sides=1``: each bound at the full rate, the caller keeps
    one), the loss bands and the drift band, in the verdict, in calibrate's summary and in the
    false-alarm benchmark.

    Draws that are all positive (a final AP or L1, a loss, a drift) are modelled on the log
    scale: their spread is multiplicative, so the band is wider above the mean than below it.
    ``log_scale=False`` (and draws that are not all positive) take the normal model: the 25%
    metric does, because a young AP has a heavy left tail that the log scale does not model
    (yolov3 in TensorFlow, seed 1000: AP 0.74 at 25% against 12 draws of 1.15-1.86, 4.8 log-scale
    deviations below their mean and 3.4 linear ones; it ends at 11.8, in its band).

    ``of_mean``: the band of the mean of that many new draws (a suite's seeds; on the log scale,
    their geometric mean: :func:`seed_mean`), narrower by sqrt(1/of_mean + 1/n) over sqrt(1 + 1/n).
    """
    values = [float(v) for v in draws or []]
    if len(values) < 2:
        return None
    if log_scale and all(v > 0 for v in values):
        logs = [math.log(v) for v in values]
        low, high = _band(statistics.fmean(logs), statistics.stdev(logs), len(logs), false_alarm, sides,
                          math.log1p(MIN_HALF_WIDTH), of_mean)
        return math.exp(low), math.exp(high)
    mean = statistics.fmean(values)
    return _band(mean, statistics.stdev(values), len(values), false_alarm, sides, MIN_HALF_WIDTH * abs(mean),
                 of_mean)


def seed_mean(values: Sequence[float], draws: Sequence[float]) -> float:
    """The seeds' mean on the scale :func:`draws_band` models the draws on: geometric where the
    draws (and the values) are all positive, arithmetic otherwise."""
    if all(float(v) > 0 for v in [*draws, *values]):
        return math.exp(statistics.fmean(math.log(float(v)) for v in values))
    return statistics.fmean(float(v) for v in values)


def _band(mean: float, std: float, n: int, false_alarm: float, sides: int, min_half: float,
          of_mean: int = 1) -> tuple[float, float]:
    half = max(prediction_half_width(std, n, false_alarm, sides=sides, of_mean=of_mean), min_half)
    return mean - half, mean + half


def draws_bound(draws: Any, false_alarm: float, direction: str) -> Optional[float]:
    """The 25% check's metric floor: the one-sided normal bound on the worse side of the draws.

    None when there is no bound a metric could cross: fewer than 2 draws, or, for a metric that
    is higher-is-better and never negative (every draw >= 0: an AP), a floor at or below zero.
    Then the 25% metric is not judged (the loss and the drift still are), and says so, rather
    than a test that cannot fail passing every run."""
    band = draws_band(draws, false_alarm, sides=1, log_scale=False)
    if band is None:
        return None
    if direction == Direction.HIGHER:
        return None if band[0] <= 0 and min(float(v) for v in draws) >= 0 else band[0]
    return band[1]


def reference_band(mean: float, std: float, n: int, false_alarm: float) -> tuple[float, float]:
    """The two-sided band from a normal (mean, std) of ``n`` draws, for a reference recorded
    without its draws (``draws_band`` is used wherever the draws are there)."""
    return _band(mean, std, n, false_alarm, 2, MIN_HALF_WIDTH * abs(mean))


def early_threshold(mean: float, std: float, n: int, false_alarm: float, direction: str) -> float:
    """The 25% check's abort line from a curve point's (mean, std) without its draws."""
    low, high = _band(mean, std, n, false_alarm, 1, MIN_HALF_WIDTH * abs(mean))
    return low if direction == Direction.HIGHER else high


def claim_on(claims: Sequence[Any], variant: str, split: str) -> Optional[Any]:
    """The primary claim on ``split`` for ``variant``, else the first claim on it, else None
    (instrument claims are never it)."""
    found = [c for c in claims if c.split == split and (c.variant or "full") == variant and not c.get("instrument")]
    return next((c for c in found if c.primary), found[0] if found else None)


def instrument_claims(claims: Sequence[Any], split: str, variant: str) -> list[Any]:
    """The claims on ``split`` that check the measuring instrument, not the model."""
    return [c for c in claims if c.get("instrument") and c.split == split and (c.variant or "full") == variant]


def other_claims(claims: Sequence[Any], primary: Any, variant: str, input_size: int) -> list[Any]:
    """The claims judged beside ``primary``: on its split and variant, measured at this input size
    (or at an unstated one), one per metric (the first listed), its own metric excluded."""
    seen = {primary.metric}
    out = []
    for claim in claims:
        if (claim.split != primary.split or (claim.variant or "full") != variant or claim.metric in seen
                or claim.get("input_size") not in (None, input_size) or claim.get("instrument")):
            continue
        seen.add(claim.metric)
        out.append(claim)
    return out


def select_claim(cfg: DictConfig, variant: str, split: str):
    """:func:`claim_on` the job's model claims; ConfigError naming the tier's claim_split if none."""
    claim = claim_on(cfg.model.claims, variant, split)
    if claim is None:
        from replicate.errors import ConfigError

        raise ConfigError(f"model.tiers.{cfg.tier.name}.claim_split",
                          f"no claim on split {split!r} for variant {variant!r}")
    return claim


def _early_point(cfg: DictConfig) -> Optional[tuple[Any, str]]:
    """(reference, curve point) the early check judges against, or None when it judges nothing:
    the check is off, nothing is compared with, or the reference has no point at its fraction."""
    reference = chosen_reference(cfg)
    early = cfg.tier.early_check
    if not early.enabled or reference is None or cfg.tier.compare_with == "none":
        return None
    point = str(early.fraction)
    return (reference, point) if point in reference.curve else None


def early_reference(cfg: DictConfig) -> Optional[tuple[float, float]]:
    """(reference curve value, abort threshold) at the early-check fraction, if the tier has one.

    With the draws at that point the threshold is their one-sided prediction bound
    (``draws_bound``), and None when that bound cannot be crossed (the metric is then not judged at
    25%); with only the curve's mean and spread, the normal one (``early_threshold``);
    a curve point without a spread (e.g. transcribed from a paper) falls back to the relative
    ``tier.early_check.tolerance``.
    """
    found = _early_point(cfg)
    if found is None:
        return None
    ref, point = found
    mean, std = reference_point(ref, point)
    if len(ref.early_draws) >= 2:
        floor = draws_bound(ref.early_draws, early_false_alarm(cfg), ref.direction)
        return (mean, floor) if floor is not None else None
    if point in ref.curve_spread and reference_draws(ref) >= 2:
        return mean, early_threshold(mean, std, reference_draws(ref), early_false_alarm(cfg), ref.direction)
    tol = cfg.tier.early_check.tolerance
    return mean, (mean * (1 - tol) if ref.direction == Direction.HIGHER else mean * (1 + tol))


def early_loss_band(cfg: DictConfig) -> Optional[tuple[float, float]]:
    """The band of the training loss at the early check, from the draws' ``early_loss_draws``."""
    found = _early_point(cfg)   # the loss draws were measured at the recorded curve point only
    return draws_band(found[0].early_loss_draws, early_false_alarm(cfg)) if found is not None else None


def early_drift_band(cfg: DictConfig) -> Optional[tuple[float, float]]:
    """The band of the weights' relative drift at the early check, from ``early_drift_draws``."""
    found = _early_point(cfg)
    return draws_band(found[0].early_drift_draws, early_false_alarm(cfg)) if found is not None else None


@dataclass(frozen=True)
class EarlyCheck:
    """What the early check (at ``fraction`` of the schedule) judges a job against, and its rule.

    Resolved once per job (:func:`early_check_for`) and carried to the worker; the loop measures,
    this class decides. Every bound is None when that test judges nothing.
    """

    fraction: float
    evaluate: bool = False   # evaluate at the fraction even with nothing to judge (a calibration run)
    reference: Optional[float] = None    # the reference curve's metric at the fraction
    threshold: Optional[float] = None    # the metric's abort line (below it: higher is better)
    loss_band: Optional[tuple[float, float]] = None
    drift_band: Optional[tuple[float, float]] = None
    direction: str = Direction.HIGHER
    source: Optional[str] = None   # where the reference at the fraction came from, when not the config's

    @property
    def runs(self) -> bool:
        """The loop stops at the fraction to evaluate (and judge what it can)."""
        return self.evaluate or self.threshold is not None

    def cheap_reason(self, loss: Optional[float], drift: Optional[float]) -> Optional[str]:
        """"loss" or "weights" when the training loss or the weights' drift is outside its band:
        judged before any evaluation is paid for. None: neither test fails (or none is judged)."""
        if _outside(loss, self.loss_band):
            return "loss"
        if _outside(drift, self.drift_band):
            return "weights"
        return None

    def metric_behind(self, value: Optional[float]) -> bool:
        """The metric at the fraction is beyond the abort line (on the wrong side of it)."""
        if value is None or self.threshold is None:
            return False
        return value < self.threshold if self.direction == Direction.HIGHER else value > self.threshold

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EarlyCheck":
        bands = {k: tuple(data[k]) if data.get(k) is not None else None for k in ("loss_band", "drift_band")}
        return cls(**{**data, **bands})


def _outside(value: Optional[float], band: Optional[Sequence[float]]) -> bool:
    return band is not None and value is not None and not band[0] <= value <= band[1]


def early_check_for(cfg: DictConfig, direction: str) -> EarlyCheck:
    """The early check of the job ``cfg``: its fraction, thresholds and bands from the tier and
    its reference (:func:`early_reference`, :func:`early_loss_band`, :func:`early_drift_band`)."""
    reference = early_reference(cfg)
    return EarlyCheck(fraction=float(cfg.tier.early_check.fraction),
                      evaluate=bool(cfg.tier.trains and cfg.tier.early_check.enabled),
                      reference=reference[0] if reference is not None else None,
                      threshold=reference[1] if reference is not None else None,
                      loss_band=early_loss_band(cfg), drift_band=early_drift_band(cfg), direction=direction)


def weight_drift(current: Sequence[Any], initial: Sequence[Any]) -> float:
    """||w - w0|| / ||w0|| over every trainable tensor together: how far training has moved the
    weights, relative to where they started. One number over millions of weights, so it varies
    little between healthy runs, while it scales with the learning rate and the momentum and
    responds to the init and to layers that do not train."""
    import torch

    if len(current) != len(initial):
        raise ValueError(f"{len(current)} trainable tensors now, {len(initial)} at the start")
    moved = sum(float(torch.sum((c.double() - i.double()) ** 2)) for c, i in zip(current, initial))
    start = sum(float(torch.sum(i.double() ** 2)) for i in initial)
    return (moved / start) ** 0.5 if start > 0 else float("inf")


# ------------------------------------------------------------------------------ training loss
# Where the loss is read: the second half of the steps before the early check (enough logged
# steps to average out batch noise, late enough to show how training goes) and the last quarter
# of the schedule (after the usual last lr drop: the loss the training settled at).
FINAL_LOSS_FROM = 0.75


def mean_loss(curve: list[dict[str, Any]], after_step: float, upto_step: float) -> Optional[float]:
    """Mean logged training loss over the steps in (``after_step``, ``upto_step``]."""
    values = [float(p["loss"]) for p in curve if "loss" in p and after_step < p["step"] <= upto_step]
    return statistics.fmean(values) if values else None


def early_loss(curve: list[dict[str, Any]], early_step: int) -> Optional[float]:
    """The training loss the early check judges."""
    return mean_loss(curve, early_step / 2, early_step)


def final_loss(result: JobResult) -> Optional[float]:
    """The training loss the final verdict judges: the mean over the schedule's last quarter
    (None for a job that did not train to its end)."""
    steps = result.steps_planned
    if not steps or result.steps_done < steps:
        return None
    return mean_loss(result.curve, FINAL_LOSS_FROM * steps, steps)


def final_loss_band(cfg: DictConfig) -> Optional[tuple[float, float]]:
    """The band of the final training loss, from the reference's ``final_loss_draws``."""
    reference = chosen_reference(cfg)
    return draws_band(reference.final_loss_draws, final_false_alarm(cfg)) if reference is not None else None


def judge_value(value: Optional[float], target: Target) -> tuple[str, Optional[Failure]]:
    """PASS inside the band; BELOW or ABOVE outside, with the failure they imply; MEASURED when
    the target has no value (nothing to compare with), whatever the metric."""
    if value is None:
        return ERROR, Failure("evaluation", "incorrect functionality", f"metric {target.metric!r} was not produced")
    if target.value is None:
        return MEASURED, None
    if target.contains(value):
        return PASS, None
    low, high = target.low, target.high
    assert low is not None and high is not None   # a target with a value has a band
    worse_side = BELOW if target.direction == Direction.HIGHER else ABOVE
    outcome = BELOW if value < low else ABOVE
    band = f"[{low:.4g}, {high:.4g}]"
    if outcome == worse_side:
        # a tier that did not train (released weights) can only have evaluated wrongly
        return outcome, Failure("training" if target.trained else "evaluation", "accuracy below expectations",
                                f"{target.metric} {value:.4g} is outside {band} ({target.kind}, {target.source})")
    # Better than the band: suspicious (wrong split, leak, or a stale claim): incorrect functionality.
    return outcome, Failure("evaluation", "incorrect functionality",
                            f"{target.metric} {value:.4g} is better than the band {band}: wrong split or a leak?")


def judge_job(result: JobResult, target: Target) -> tuple[str, Optional[Failure]]:
    """One job's verdict."""
    if result.infra:
        return INFRA, result.failure
    if result.failure is not None:
        return ERROR, result.failure
    if result.early_check.get("aborted"):
        return EARLY_ABORT, Failure("training", "accuracy below expectations", early_abort_message(result.early_check,
                                                                                                  target))
    uncalibrated = instrument_failure(result.metrics, target)
    if uncalibrated is not None:
        return INFRA, uncalibrated
    verdict, failure = judge_value(result.metrics.get(target.metric) if target.metric else None, target)
    loss = final_loss(result)
    if verdict == PASS and target.loss_band is not None and loss is not None:
        low, high = target.loss_band
        if not low <= loss <= high:
            return OFF_CURVE, Failure("training", "incorrect functionality",
                                      f"training loss {loss:.4g} over the last quarter of the schedule is outside "
                                      f"[{low:.4g}, {high:.4g}] (the band of the calibration draws' loss): "
                                      f"{target.metric} is in its band, but the training is not the reference's")
    if verdict == PASS:
        return judge_also(lambda metric: result.metrics.get(metric), target, (verdict, failure))
    return verdict, failure


def instrument_failure(metrics: dict[str, float], target: Target) -> Optional[Failure]:
    """Why the instrument cannot be trusted (a miss of one of its own published numbers), or None."""
    for check in target.instrument:
        value = metrics.get(check.metric) if check.metric else None
        if value is None or not check.contains(value):
            measured = ("was not measured" if value is None
                        else f"is {value:.4g}, outside [{check.low:.4g}, {check.high:.4g}]")
            return Failure("evaluation", "incorrect functionality",
                           f"uncalibrated instrument: {check.metric} {measured} ({check.source}); the "
                           f"{target.metric} it measures says nothing about the model")
    return None


def judge_also(value_of: Callable[[str], Optional[float]], target: Target,
               primary: tuple[str, Optional[Failure]]) -> tuple[str, Optional[Failure]]:
    """The primary claim's verdict, unless one of the tier's other claims is missed: then that."""
    for other in target.also:
        verdict, failure = judge_value(value_of(other.metric) if other.metric else None, other)
        if verdict != PASS:
            return verdict, failure
    return primary


def early_abort_message(check: dict[str, Any], target: Target) -> str:
    """Why the 25% check stopped the run: the metric under its floor, or the loss or the weights'
    drift off its band."""
    at = f"at {check['fraction']:.0%} of the schedule"
    if check.get("reason") == "loss":
        low, high = check["loss_band"]
        return (f"training loss {check['train_loss']:.4g} {at} is outside [{low:.4g}, {high:.4g}] "
                f"(the band of the calibration draws' loss)")
    if check.get("reason") == "weights":
        low, high = check["drift_band"]
        return (f"weights moved {check['weight_drift']:.4g} of their initial norm {at}, outside "
                f"[{low:.4g}, {high:.4g}] (the band of the calibration draws' drift): the optimizer does not "
                f"train as calibrated (learning rate, momentum, init, frozen layers?)")
    return (f"{target.metric} {check['metric']:.4g} {at} is "
            f"{'below' if target.direction == 'higher' else 'above'} {check['threshold']:.4g} "
            f"(reference curve {check['reference']:.4g})")


@dataclass
class GroupVerdict:
    """Several seeds of one model x tier x hardware: mean, spread, one verdict."""

    verdict: str
    mean: Optional[float]
    std: Optional[float]
    seeds: list[int]
    failure: Optional[Failure]
    noise_note: Optional[str]
    band: Optional[tuple[float, float]] = None   # the band the mean was judged against, when not the target's


def judge_group(results: list[tuple[int, JobResult, str]], target: Target) -> GroupVerdict:
    """Verdict over seeds from (seed, result, job verdict) triples: the mean decides.

    Errors and infrastructure failures are not averaged away: any of them decides the group, which
    still keeps the mean of the seeds that measured the metric.
    """
    seeds = [s for s, _, _ in results]
    found = [r.metrics.get(target.metric) if target.metric else None for _, r, _ in results]
    values = [v for v in found if v is not None]
    for outcome in (INFRA, ERROR, EARLY_ABORT, OFF_CURVE):
        hit = next(((r, v) for _, r, v in results if v == outcome), None)
        if hit:
            # The group fails, but keeps what its seeds measured (the leaderboard's value and its
            # place in the trend); an early abort has no final metric, so it has no mean.
            failure = hit[0].failure or judge_job(hit[0], target)[1]
            mean = statistics.fmean(values) if values else None
            std = statistics.stdev(values) if len(values) > 1 else None
            partial = (f"mean of the {len(values)} of {len(found)} seeds that measured {target.metric}"
                       if values and len(values) < len(found) else None)
            return GroupVerdict(outcome, mean, std, seeds, failure, partial)
    if len(values) < len(found):
        verdict, failure = judge_value(None, target)
        return GroupVerdict(verdict, None, None, seeds, failure, None)
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else None
    judged, statistic = of_seeds(target, values), mean
    if judged is not target:   # the band of a mean of k seeds, on the draws' scale
        statistic = seed_mean(values, target.draws or [])
    verdict, failure = judge_value(statistic, judged)
    if verdict == PASS:   # the other claims by their own means over the seeds

        def mean_of(metric: str) -> Optional[float]:
            seen = [r.metrics.get(metric) for _, r, _ in results]
            return None if any(v is None for v in seen) else statistics.fmean(v for v in seen if v is not None)

        verdict, failure = judge_also(mean_of, target, (verdict, failure))
    note = noise_note(judged, None if std is None else std / len(values) ** 0.5)
    if judged is not target:
        seeds_said = (f"judged on the {len(values)} seeds' {'geometric ' if statistic != mean else ''}mean "
                      f"{statistic:.4g} against the band of such a mean [{judged.low:.4g}, {judged.high:.4g}]")
        note = seeds_said if note is None else f"{seeds_said}; {note}"
    return GroupVerdict(verdict, mean, std, seeds, failure, note, band=judged.band)


def of_seeds(target: Target, values: Sequence[float]) -> Target:
    """The target a mean of ``values`` (several seeds) is judged against: a reference with its
    draws gives the band of a mean of that many draws; otherwise (a claim: the lab's tolerance,
    one seed) ``target`` itself."""
    if len(values) < 2 or not target.draws or target.false_alarm is None:
        return target
    band = draws_band(target.draws, target.false_alarm, of_mean=len(values))
    return target if band is None else dataclasses.replace(target, band=band, tolerance=band[1] - (target.value or 0))


def noise_note(target: Target, std: Optional[float]) -> Optional[str]:
    """Say so when the band is narrower than the measured noise of what it judges (one seed's, or
    a mean's: std / sqrt(k)): then the verdict would be flaky."""
    noise = std if std is not None else target.spread
    if noise is None or target.value is None or target.high is None:
        return None
    half_band = target.high - target.value
    if noise > half_band:
        return (f"tolerance +-{half_band:.4g} is tighter than the measured seed noise (std {noise:.4g}): "
                f"this verdict can flip between runs; widen the tolerance or add seeds")
    return None
