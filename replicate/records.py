"""Turn a job's spec, result and verdict into the store's row: cost, time-to-quality, band; and a
seed group's results into its group-verdict row."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, TypedDict

from replicate.jobs import Failure, JobResult, JobSpec
from replicate.verdict import Target, judge_group


class JobRecord(TypedDict):
    """A job's row as the harness writes it to the store (``jobs`` table; JSON columns as dicts)."""

    job_id: str
    suite_id: Optional[str]
    model: str
    variant: str
    framework: str
    tier: str
    hardware: str
    seed: int
    verdict: str
    failure_stage: Optional[str]
    failure_impact: Optional[str]
    failure_message: Optional[str]
    metric_name: Optional[str]
    metric_value: Optional[float]
    metrics: dict[str, float]
    compared_with: dict[str, Any]
    curve: list[dict[str, float]]
    setup_s: float
    train_s: float
    eval_s: float
    lost_s: float
    queue_s: float
    retry_overhead_s: float
    wall_s: float
    accelerator_hours: float
    cost: float
    throughput: Optional[float]
    time_to_quality_s: Optional[float]
    steps_done: int
    steps_planned: int
    restarts: int
    attempts: list[dict[str, Any]]
    early_check: dict[str, Any]
    lr_scaling: dict[str, Any]
    environment: dict[str, Any]
    config: dict[str, Any]
    config_hash: str


class GroupRecord(TypedDict):
    """A seed group's verdict row (``groups`` table)."""

    suite_id: str
    model: str
    variant: str
    framework: str
    tier: str
    hardware: str
    seeds: list[int]
    metric_name: Optional[str]
    mean: Optional[float]
    std: Optional[float]
    verdict: str
    failure_stage: Optional[str]
    failure_impact: Optional[str]
    message: Optional[str]
    compared_with: dict[str, Any]
    noise_note: Optional[str]


def accelerator_hours(seconds: float, hardware: Any) -> float:
    """Hours of ``seconds`` on every accelerator of the profile."""
    return seconds / 3600.0 * int(hardware.count)


def price_of(seconds: float, hardware: Any) -> float:
    """What ``seconds`` of a job cost on the profile: accelerator-hours x hourly price (the one rule
    for every cost: a job's, an abort's savings, a plan's estimate)."""
    return accelerator_hours(seconds, hardware) * float(hardware.price_per_accelerator_hour)


def cost_of(result: JobResult, hardware: Any) -> tuple[float, float]:
    """Accelerator-hours and cost: wall time (dead attempts included) x accelerators x hourly price."""
    return accelerator_hours(result.times.total_s, hardware), price_of(result.times.total_s, hardware)


def time_to_quality(result: JobResult, target: Target) -> Optional[float]:
    """Seconds (setup + training) until the metric first entered the band, if it did."""
    if target.value is None or not target.metric:
        return None
    for point in result.curve:
        value = point.get(target.metric)
        if value is not None and target.contains(value):
            return result.times.setup_s + float(point.get("train_s", 0.0))
    return None


def job_record(spec: JobSpec, result: JobResult, verdict: str, failure: Optional[Failure], target: Target,
               hardware: Any) -> JobRecord:
    hours, cost = cost_of(result, hardware)
    early = dict(result.early_check)
    if early.get("aborted"):
        saved_s = early.get("saved_train_s", 0.0)
        early.update(saved_accelerator_hours=accelerator_hours(saved_s, hardware),
                     saved_cost=price_of(saved_s, hardware))
    times = result.times
    return {
        "job_id": spec.job_id, "suite_id": spec.suite_id, "model": spec.model, "variant": spec.variant,
        "framework": spec.framework, "tier": spec.tier, "hardware": spec.hardware, "seed": spec.seed,
        "verdict": verdict,
        "failure_stage": failure.stage if failure else None,
        "failure_impact": failure.impact if failure else None,
        "failure_message": failure.message if failure else None,
        "metric_name": target.metric, "metric_value": result.metrics.get(target.metric) if target.metric else None,
        "metrics": result.metrics, "compared_with": target.to_dict(), "curve": result.curve,
        "setup_s": times.setup_s, "train_s": times.train_s, "eval_s": times.eval_s, "lost_s": times.lost_s,
        "queue_s": times.queue_s, "retry_overhead_s": times.retry_overhead_s,
        "wall_s": times.total_s, "accelerator_hours": hours, "cost": cost, "throughput": result.throughput,
        "time_to_quality_s": time_to_quality(result, target), "steps_done": result.steps_done,
        "steps_planned": result.steps_planned, "restarts": result.restarts, "attempts": result.attempts,
        "early_check": early,
        "lr_scaling": result.lr_scaling, "environment": result.environment, "config": spec.config,
        "config_hash": spec.config_hash,
    }


def group_record(suite_id: Optional[str], identity: Mapping[str, Any],
                 triples: Sequence[tuple[int, JobResult, str]], target: Target) -> GroupRecord:
    """The store's group-verdict row of one seed group, judged from its jobs.

    Args:
        suite_id: the suite (None for a single run: stored as "").
        identity: any mapping holding the group's model, variant, framework, tier and hardware
            (a job record or a spec's dict).
        triples: ``(seed, result, job verdict)`` per job, as :func:`replicate.verdict.judge_group` takes.
        target: what the group is compared with.
    """
    group = judge_group(list(triples), target)
    failure = group.failure
    return {"suite_id": suite_id or "", "model": identity["model"], "variant": identity["variant"],
            "framework": identity["framework"], "tier": identity["tier"], "hardware": identity["hardware"],
            "seeds": group.seeds,
            "metric_name": target.metric, "mean": group.mean, "std": group.std, "verdict": group.verdict,
            "failure_stage": failure.stage if failure else None,
            "failure_impact": failure.impact if failure else None,
            "message": failure.message if failure else None,
            # the band the seeds' mean was judged against (narrower than one seed's for a reference)
            "compared_with": {**target.to_dict(),
                              **({"low": group.band[0], "high": group.band[1]} if group.band else {})},
            "noise_note": group.noise_note}
