"""The lab's reference curves: its own runs that passed their claims (and curves transcribed from a
published training log), promoted by hand, set the 25% check of later runs of the same recipe.

A job of a tier that trains and is judged against a claim (the full tier), with no defect
injected, that passes every claim becomes a *candidate*: its metric, training loss and weights'
drift at the early check, and its final metric and loss. ``replicate reference promote ID`` makes
it count. The promoted runs of a job's model, variant, framework, hardware profile and recipe
(``recipe_fingerprint``: the same steps, batch, sizes and data) give that job's early check:

- at least :data:`~replicate.verdict.MIN_REFERENCE_DRAWS` runs: the floor and bands from their
  spread, by the very functions that build the smoke references' (``draws_bound``,
  ``draws_band``);
- 1 to 5: the tier's stated tolerance (``tier.early_check.tolerance``, relative) below their mean
  metric and around their mean loss and drift: from so few runs a prediction interval is wider
  than any tolerance (at the early check's share of the default false-alarm budget, 0.004 / 2 / 3
  one-sided, Student's t is 477 for 2 runs and 6.4 for 6);
- none: the early point is measured, not judged, and the job's record says so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import statistics
from typing import Any, Mapping, Optional, Sequence

from replicate.config.schema import Direction
from replicate.jobs import PASS, JobResult
from replicate.resolved import ResolvedJob
from replicate.verdict import (
    MIN_REFERENCE_DRAWS,
    EarlyCheck,
    Target,
    draws_band,
    draws_bound,
    early_false_alarm,
    final_false_alarm,
    final_loss,
)

PROMOTED = "promoted"
# What a model tier's block records about its references, not how it trains.
NOT_RECIPE = ("reference", "framework_references", "evaluation_references")


def applies(job: ResolvedJob) -> bool:
    """The job's 25% check can come from the lab's runs: it trains, it is judged against a claim,
    its early check is on, and its config gives no curve at the fraction (the full tier)."""
    cfg = job.cfg
    from_config = job.early.threshold is not None and job.early.source is None   # the lab's set a source
    return bool(cfg.tier.trains) and job.target.kind == "claim" and bool(cfg.tier.early_check.enabled) \
        and not from_config


def recipe_of(config: Mapping[str, Any]) -> str:
    """The recipe a run follows, as a short hash: its model tier's block (recipe, sizes, variant),
    the data it reads (not where) and its workers; not the tier's policy, so the short tier's job
    (the first 25% of the full tier's recipe, ``tiers.short: ${.full}``) shares the full tier's
    recipe, and not an injected defect (the selftest's job is judged against the clean runs)."""
    tier = config["tier"]["name"]
    model_tier = {k: v for k, v in config["model"]["tiers"][tier].items() if k not in NOT_RECIPE}
    data = dict(config["datasets"].get(model_tier["data"]) or {})
    data.pop("root", None)
    parts = {"model_tier": model_tier, "data": data, "workers": config.get("workers"),
             "variant": config.get("variant")}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def recipe_key(job: ResolvedJob) -> dict[str, str]:
    """What a reference run must share with a job to be its reference."""
    spec = job.spec
    return {"model": spec.model, "variant": spec.variant, "framework": spec.framework, "hardware": spec.hardware,
            "recipe": recipe_of(spec.config)}


def candidate(job: ResolvedJob, verdict: str, row: Mapping[str, Any]) -> Optional[dict[str, Any]]:
    """The reference run a finished job offers, or None: only a PASS (every claim) of a job the
    lab's references apply to, with no defect injected, which measured its metric at the early
    check."""
    early = row.get("early_check") or {}
    if verdict != PASS or not applies(job) or job.injected or early.get("metric") is None:
        return None
    return {**recipe_key(job), "tier": job.spec.tier, "job_id": job.job_id, "metric_name": job.target.metric,
            "direction": job.target.direction, "fraction": float(early.get("fraction") or job.early.fraction),
            "early_metric": early.get("metric"), "early_loss": early.get("train_loss"),
            "early_drift": early.get("weight_drift"), "final_metric": row.get("metric_value"),
            "final_loss": final_loss(JobResult(job.job_id, curve=list(row.get("curve") or []),
                                               steps_done=int(row.get("steps_done") or 0),
                                               steps_planned=int(row.get("steps_planned") or 0))),
            "source": f"job {job.job_id} of suite {job.spec.suite_id or '(single run)'}: PASS against "
                      f"{job.target.metric} {job.target.value} ({job.target.source})"}


def matching(job: ResolvedJob, runs: Sequence[Mapping[str, Any]],
             fraction: Optional[float] = None) -> list[Mapping[str, Any]]:
    """The promoted runs that are ``job``'s reference: same recipe key and metric, measured at
    ``fraction`` of the schedule (default: where the job's early check stands)."""
    key = recipe_key(job)
    at = job.early.fraction if fraction is None else fraction
    return [r for r in runs if r["status"] == PROMOTED and all(r[k] == v for k, v in key.items())
            and r["metric_name"] == job.target.metric and abs(float(r["fraction"]) - at) < 1e-9]


def _values(runs: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    return [float(r[key]) for r in runs if r.get(key) is not None]


def early_check_from(job: ResolvedJob, runs: Sequence[Mapping[str, Any]]) -> EarlyCheck:
    """``job``'s early check from its promoted reference runs (see the module docstring)."""
    early = job.early
    metrics = _values(runs, "early_metric")
    if not metrics:
        return dataclasses.replace(early, source="no promoted reference run of this recipe: the 25% point is "
                                                 "measured, not judged (replicate reference list)")
    mean = statistics.fmean(metrics)
    if _from_spread(metrics):
        alarm = early_false_alarm(job.cfg)
        return dataclasses.replace(
            early, reference=mean, threshold=draws_bound(metrics, alarm, early.direction),
            loss_band=draws_band(_values(runs, "early_loss"), alarm),
            drift_band=draws_band(_values(runs, "early_drift"), alarm), source=_said(runs, job))
    tolerance = _tolerance(job)
    threshold = mean * (1 - tolerance) if early.direction == Direction.HIGHER else mean * (1 + tolerance)
    return dataclasses.replace(
        early, reference=mean, threshold=threshold, loss_band=_around(_values(runs, "early_loss"), tolerance),
        drift_band=_around(_values(runs, "early_drift"), tolerance), source=_said(runs, job))


# The one rule for how many promoted runs give a band from their spread (below: the tier's tolerance).
def _from_spread(values: Sequence[float]) -> bool:
    return len(values) >= MIN_REFERENCE_DRAWS


def _tolerance(job: ResolvedJob) -> float:
    """The tier's stated tolerance, relative, used below :data:`MIN_REFERENCE_DRAWS` runs."""
    return float(job.cfg.tier.early_check.tolerance)


def _said(runs: Sequence[Mapping[str, Any]], job: ResolvedJob) -> str:
    """Where a reference built from ``runs`` came from, as every record says it."""
    ids = ", ".join(str(r["id"]) for r in runs)
    measured = _values(runs, "early_metric")
    if _from_spread(measured):
        return f"the spread of {len(measured)} promoted reference runs of the lab (ids {ids})"
    return (f"{len(measured)} promoted reference run(s) of the lab (ids {ids}), the tier's tolerance "
            f"{_tolerance(job):g} (a band from their spread needs {MIN_REFERENCE_DRAWS})")


def _around(values: list[float], tolerance: float) -> Optional[tuple[float, float]]:
    """Their mean +- ``tolerance`` of it (a relative band); None without values."""
    if not values:
        return None
    mean = statistics.fmean(values)
    return mean * (1 - tolerance), mean * (1 + tolerance)


def curve_target_from(job: ResolvedJob, runs: Sequence[Mapping[str, Any]]) -> Target:
    """The short tier's target (``compare_with: reference_curve`` without a curve in the config):
    the promoted runs' metric at the fraction the tier stops at, with the tier's stated tolerance
    from 1 to 5 runs and the band from their spread from 6; none leaves the job MEASURED."""
    target = job.target
    metrics = _values(runs, "early_metric")
    if not metrics:
        return target
    mean = statistics.fmean(metrics)
    if _from_spread(metrics):
        band = draws_band(metrics, final_false_alarm(job.cfg))
    else:
        band = _around(metrics, _tolerance(job))
    assert band is not None
    return dataclasses.replace(target, value=mean, tolerance=band[1] - mean, tolerance_kind="absolute",
                               band=band, source=_said(runs, job))


def takes_curve(job: ResolvedJob) -> bool:
    """The job is judged against a reference curve the config does not record (the short tier)."""
    return job.target.kind == "reference_curve" and job.target.value is None


def with_lab_reference(job: ResolvedJob, runs: Sequence[Mapping[str, Any]]) -> ResolvedJob:
    """``job`` with its early check (full tier) or its target (short tier) from the lab's
    promoted runs, where they apply."""
    if takes_curve(job):   # the short tier stops at its fraction: the runs' point there is its target
        found = matching(job, runs, fraction=float(job.cfg.tier.schedule_fraction))
        return dataclasses.replace(job, target=curve_target_from(job, found))
    if not applies(job):
        return job
    return dataclasses.replace(job, early=early_check_from(job, matching(job, runs)))
