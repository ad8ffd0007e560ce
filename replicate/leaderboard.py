"""The leaderboard and the cost view, computed from the results store.

One row per model group of a suite (model x variant x framework x tier x hardware): what it is
compared with (a claim, or a reference of this implementation: ``target_label`` says which) with
its source and band, the measured mean and spread over seeds, the verdict, what the group's
jobs cost and how long they took, and the trend against the latest earlier suite that ran the
same group. W&B's leaderboard table, the HTML report and ``replicate cost`` all read these rows,
so every view shows the store's values.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Optional

from replicate.defects.injection import defect_of
from replicate.errors import UserInputError
from replicate.formatting import hardware_of
from replicate.jobs import GROUP_IDENTITY, MEASURED, PASS, group_key
from replicate.verdict import target_label

# A group of a suite is one seed-aggregated verdict; these columns identify it across suites.
GROUP_COLUMNS = GROUP_IDENTITY

LEADERBOARD_KEYS = (
    "model", "variant", "framework", "tier", "hardware", "section", "metric_name", "direction", "target_kind",
    "target_label", "target_value", "target_source", "tolerance", "tolerance_kind", "deviations", "band_low",
    "band_high", "mean", "std", "seeds", "note", "delta",
    "delta_pct", "verdict", "failure_stage", "failure_impact", "accelerator_hours", "cost", "currency",
    "price_source", "price_placeholder", "wall_s",
    "time_to_quality_s", "lost_s", "early_abort_saved_cost", "previous_suite_id", "previous_mean",
    "previous_verdict", "trend",
)

# The leaderboard's two questions, by what a group is compared with: did it reproduce the paper
# (a claim), and is this implementation still what it was (the canary: its own reference).
PAPER, CANARY = "against the paper", "canary"
SECTION_TITLES = {PAPER: "Against the paper", CANARY: "Canary: this implementation against its own reference"}


def section_of(target_kind: Optional[str]) -> str:
    """Which of the two the group answers; a group with nothing to compare with is a canary."""
    return PAPER if target_kind == "claim" else CANARY


def prices_of(jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """The currency, price source and placeholder flag the jobs' hardware profile recorded; None
    each where a job recorded none (a row from before currencies) or the jobs disagree."""
    seen = {(hw.get("currency"), hw.get("price_source"), hw.get("price_placeholder"))
            for hw in map(hardware_of, jobs)}
    currency, source, placeholder = seen.pop() if len(seen) == 1 else (None, None, None)
    return {"currency": currency, "price_source": source, "price_placeholder": placeholder}


class UnknownSuite(UserInputError):
    """A suite id that the store has never recorded (exit 2, naming it)."""

    def __init__(self, suite_id: str, known: Iterable[str]):
        self.suite_id = suite_id
        known = list(known)
        shown = ", ".join(known[:5]) + (" ..." if len(known) > 5 else "")
        super().__init__(f"suite={suite_id}: no such suite in the store (known: {shown or 'none'})")


def check_suite(store: Any, suite_id: str) -> None:
    """Raise :class:`UnknownSuite` unless ``suite_id`` is recorded in ``store``."""
    known = [s["suite_id"] for s in store.suites()]
    if suite_id not in known:
        raise UnknownSuite(suite_id, known)


def latest_suite_id(store: Any) -> Optional[str]:
    """The newest suite's id, or None for an empty store."""
    suites = store.suites(limit=1)
    return suites[0]["suite_id"] if suites else None


def saved_cost(job: dict[str, Any]) -> float:
    """Cost an early abort saved (the schedule it did not run); 0 for other jobs."""
    return float((job.get("early_check") or {}).get("saved_cost") or 0.0)


def job_costs(jobs: list[dict[str, Any]]) -> dict[str, float]:
    """Sums over ``jobs``: accelerator-hours, cost, wall time, restart losses, abort savings."""
    return {
        "accelerator_hours": sum(float(j["accelerator_hours"] or 0.0) for j in jobs),
        "cost": sum(float(j["cost"] or 0.0) for j in jobs),
        "wall_s": sum(float(j["wall_s"] or 0.0) for j in jobs),
        "lost_s": sum(float(j["lost_s"] or 0.0) for j in jobs),
        "early_abort_saved_cost": sum(saved_cost(j) for j in jobs),
    }


def _time_to_quality(jobs: list[dict[str, Any]]) -> Optional[float]:
    """Mean over the seeds that reached the band; None when none did."""
    reached = [float(j["time_to_quality_s"]) for j in jobs if j.get("time_to_quality_s") is not None]
    return sum(reached) / len(reached) if reached else None


def _previous(history: list[dict[str, Any]], suite_id: str) -> dict[tuple, dict[str, Any]]:
    """For each group key, the latest suite before ``suite_id`` that measured it (history is
    oldest first, so later entries overwrite earlier ones)."""
    previous: dict[tuple, dict[str, Any]] = {}
    for group in history:
        if group["suite_id"] == suite_id:
            break
        if group.get("mean") is not None:   # a night that measured nothing is no baseline for a trend
            previous[group_key(group)] = group
    return previous


def target_columns(group: dict[str, Any]) -> dict[str, Any]:
    """What the group is compared with (claim, reference or nothing: kind and display label),
    its value, source, band and direction, plus the delta of the mean to it."""
    target = group.get("compared_with") or {}
    value, mean = target.get("value"), group.get("mean")
    delta = None if value is None or mean is None else mean - value
    return {
        "metric_name": group.get("metric_name") or target.get("metric"), "direction": target.get("direction"),
        "target_kind": target.get("kind"), "target_label": target_label(target.get("kind")),
        "target_value": value, "target_source": target.get("source"), "deviations": target.get("deviations"),
        "tolerance": target.get("tolerance") if value is not None else None,
        "tolerance_kind": target.get("tolerance_kind") if value is not None else None,
        "band_low": target.get("low"), "band_high": target.get("high"), "delta": delta,
        "delta_pct": None if delta is None or not value else 100.0 * delta / value,
    }


def row_kind(group: dict[str, Any]) -> Optional[str]:
    return (group.get("compared_with") or {}).get("kind")


def leaderboard_rows(store: Any, suite_id: str, *, jobs: Optional[list[dict[str, Any]]] = None,
                     history: Optional[list[dict[str, Any]]] = None) -> list[dict[str, Any]]:
    """One row per model group of ``suite_id`` with exactly the keys of :data:`LEADERBOARD_KEYS`.

    Costs and times are sums over the group's jobs (all seeds); ``time_to_quality_s`` is the mean
    over the seeds that reached the band. ``previous_*`` and ``trend`` (mean - previous mean) come
    from the latest earlier suite holding the same group; None when there is none.

    Args:
        jobs, history: the suite's jobs and the store's group history, when the caller has read
            them already (the report): not read twice.

    Raises:
        UnknownSuite: the store has no suite ``suite_id``.
    """
    check_suite(store, suite_id)
    jobs_by_group: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for job in store.jobs(suite_id=suite_id) if jobs is None else jobs:
        jobs_by_group[group_key(job)].append(job)
    previous = _previous(store.group_history() if history is None else history, suite_id)
    rows = []
    for group in store.groups(suite_id):
        jobs = jobs_by_group.get(group_key(group), [])
        before = previous.get(group_key(group)) or {}
        mean, before_mean = group.get("mean"), before.get("mean")
        row = {c: group[c] for c in GROUP_COLUMNS}
        row.update(target_columns(group), section=section_of(row_kind(group)), **prices_of(jobs))
        row.update(mean=mean, std=group.get("std"), seeds=list(group.get("seeds") or []), note=group.get("noise_note"),
                   verdict=group["verdict"], failure_stage=group.get("failure_stage"),
                   failure_impact=group.get("failure_impact"), **job_costs(jobs),
                   time_to_quality_s=_time_to_quality(jobs), previous_suite_id=before.get("suite_id"),
                   previous_mean=before_mean, previous_verdict=before.get("verdict"),
                   trend=None if mean is None or before_mean is None else mean - before_mean)
        rows.append({key: row[key] for key in LEADERBOARD_KEYS})
    return rows


def _per_pass(cost: float, passes: int) -> Optional[float]:
    return cost / passes if passes else None


def cost_summary(store: Any, suite_id: str) -> dict[str, Any]:
    """A suite's cost view: accelerator-hours, cost, cost saved by early aborts, time lost to
    restarts, the number of PASS groups and the cost per PASS (None when nothing passed), and the
    number of MEASURED groups (nothing to compare with), which never count as a PASS.

    Raises:
        UnknownSuite: the store has no suite ``suite_id``.
    """
    check_suite(store, suite_id)
    jobs = store.jobs(suite_id=suite_id)
    groups = store.groups(suite_id)
    totals = job_costs(jobs)
    passes = sum(1 for g in groups if g["verdict"] == PASS)
    measured = sum(1 for g in groups if g["verdict"] == MEASURED)
    return {"suite_id": suite_id, "jobs": len(jobs), "groups": len(groups), "passes": passes,
            "measured": measured, **totals, "cost_per_pass": _per_pass(totals["cost"], passes), **prices_of(jobs)}


def model_costs(store: Any, suite_id: Optional[str] = None) -> list[dict[str, Any]]:
    """Per model: the cost view over the whole history (every suite), or over one suite.

    A PASS is a PASS group verdict; a job run outside any suite (``replicate run``) has no group
    and counts as its own. Sorted by model name.

    Raises:
        UnknownSuite: ``suite_id`` is given and the store has no such suite.
    """
    if suite_id is not None:
        check_suite(store, suite_id)
    jobs = store.jobs(suite_id=suite_id)
    groups = store.groups(suite_id) if suite_id is not None else store.group_history()
    passes: dict[str, int] = defaultdict(int)
    for group in groups:
        passes[group["model"]] += group["verdict"] == PASS
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for job in jobs:
        by_model[job["model"]].append(job)
        # an injected job (defect=NAME) that was missed is a PASS of the benchmark's test, not of the model
        if job.get("suite_id") is None and job["verdict"] == PASS and not defect_of(job):
            passes[job["model"]] += 1
    rows = []
    for model in sorted(by_model):
        totals = job_costs(by_model[model])
        rows.append({"model": model, "jobs": len(by_model[model]),
                     "suites": len({j["suite_id"] for j in by_model[model] if j.get("suite_id")}),
                     "passes": passes[model], **totals, "cost_per_pass": _per_pass(totals["cost"], passes[model]),
                     **prices_of(by_model[model])})
    return rows
