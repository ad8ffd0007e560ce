"""Verdicts: measured metric vs the claim or reference, a two-sided tolerance band, seeds.

Far above the band is flagged too: a wrong split or a train/val leak looks like that.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any, Optional

from omegaconf import DictConfig

from replicate.jobs import ABOVE, BELOW, EARLY_ABORT, ERROR, INFRA, PASS, Failure, JobResult


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

    @property
    def low(self) -> Optional[float]:
        if self.value is None:
            return None
        return self.value * (1 - self.tolerance) if self.tolerance_kind == "relative" else self.value - self.tolerance

    @property
    def high(self) -> Optional[float]:
        if self.value is None:
            return None
        return self.value * (1 + self.tolerance) if self.tolerance_kind == "relative" else self.value + self.tolerance

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "low": self.low, "high": self.high}


def target_for(cfg: DictConfig, variant: str) -> Target:
    """The comparison target of a job: the tier says claim, reference or reference curve."""
    tier = cfg.model.tiers[cfg.tier.name]
    kind = cfg.tier.compare_with
    if kind in ("reference", "reference_curve"):
        ref = tier.reference
        value = ref.value if kind == "reference" else ref.curve[str(cfg.tier.schedule_fraction)]
        return Target(kind, ref.metric, float(value), float(ref.tolerance), "relative", ref.direction,
                      ref.source, split=tier.eval_split, spread=float(ref.spread))
    if kind == "claim":
        claim = select_claim(cfg, variant, tier.claim_split)
        return Target("claim", claim.metric, float(claim.value), float(claim.tolerance), claim.tolerance_kind,
                      claim.direction, claim.source, split=claim.split)
    primary = next(c for c in cfg.model.claims if c.primary)
    return Target("none", primary.metric if tier.reference is None else tier.reference.metric, None, 0.0,
                  "relative", primary.direction, "calibration run: nothing to compare with")


def select_claim(cfg: DictConfig, variant: str, split: str):
    """The primary claim on ``split`` for ``variant``, else the first claim on it."""
    claims = [c for c in cfg.model.claims if c.split == split and (c.variant or "full") == variant]
    if not claims:
        from replicate.errors import ConfigError

        raise ConfigError(f"model.tiers.{cfg.tier.name}.claim_split",
                          f"no claim on split {split!r} for variant {variant!r}")
    return next((c for c in claims if c.primary), claims[0])


def early_reference(cfg: DictConfig) -> Optional[float]:
    """The reference curve's value at the early-check fraction, if the tier has one."""
    tier = cfg.model.tiers[cfg.tier.name]
    early = cfg.tier.early_check
    if not early.enabled or tier.reference is None or cfg.tier.compare_with == "none":
        return None
    value = tier.reference.curve.get(str(early.fraction))
    return None if value is None else float(value)


def judge_value(value: Optional[float], target: Target) -> tuple[str, Optional[Failure]]:
    """PASS inside the band; BELOW or ABOVE outside, with the failure they imply."""
    if value is None:
        return ERROR, Failure("evaluation", "incorrect functionality", f"metric {target.metric!r} was not produced")
    if target.value is None or target.contains(value):
        return PASS, None
    worse_side = BELOW if target.direction == "higher" else ABOVE
    outcome = BELOW if value < target.low else ABOVE
    band = f"[{target.low:.4g}, {target.high:.4g}]"
    if outcome == worse_side:
        return outcome, Failure("training", "accuracy below expectations",
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
        check = result.early_check
        return EARLY_ABORT, Failure(
            "training", "accuracy below expectations",
            f"{target.metric} {check['metric']:.4g} at {check['fraction']:.0%} of the schedule is "
            f"{'below' if target.direction == 'higher' else 'above'} {check['threshold']:.4g} "
            f"(reference curve {check['reference']:.4g})")
    return judge_value(result.metrics.get(target.metric), target)


@dataclass
class GroupVerdict:
    """Several seeds of one model x tier x hardware: mean, spread, one verdict."""

    verdict: str
    mean: Optional[float]
    std: Optional[float]
    seeds: list[int]
    failure: Optional[Failure]
    noise_note: Optional[str]


def judge_group(results: list[tuple[int, JobResult, str]], target: Target) -> GroupVerdict:
    """Verdict over seeds from (seed, result, job verdict) triples: the mean decides.

    Errors and infrastructure failures are not averaged away: any of them decides the group.
    """
    seeds = [s for s, _, _ in results]
    for outcome in (INFRA, ERROR, EARLY_ABORT):
        hit = next(((r, v) for _, r, v in results if v == outcome), None)
        if hit:
            failure = hit[0].failure or judge_job(hit[0], target)[1]
            return GroupVerdict(outcome, None, None, seeds, failure, None)
    values = [r.metrics.get(target.metric) for _, r, _ in results]
    if any(v is None for v in values):
        verdict, failure = judge_value(None, target)
        return GroupVerdict(verdict, None, None, seeds, failure, None)
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else None
    verdict, failure = judge_value(mean, target)
    return GroupVerdict(verdict, mean, std, seeds, failure, noise_note(target, std))


def noise_note(target: Target, std: Optional[float]) -> Optional[str]:
    """Say so when the band is narrower than the measured seed noise (verdicts would be flaky)."""
    noise = std if std is not None else target.spread
    if noise is None or target.value is None:
        return None
    half_band = target.high - target.value
    if noise > half_band:
        return (f"tolerance +-{half_band:.4g} is tighter than the measured seed noise (std {noise:.4g}): "
                f"this verdict can flip between runs; widen the tolerance or add seeds")
    return None
