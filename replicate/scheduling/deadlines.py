"""Each job's deadline, from the work it does: a margin times how long the same recipe took on the
same hardware profile before (the store's finished runs), never less than a floor; where the
store has no such run, ``scheduler.job_timeout_s``. The deadline counts from the job's start (the
scheduler's ``Pending.started``), not its submission, so a job that waited for a node is not cut
short for it.

"The same recipe" is the same group (model, variant, framework, tier, hardware) with the same
recipe fingerprint (:func:`recipe_fingerprint`): a run with another step count, batch or input
size says nothing about this one's duration.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Optional

from replicate.jobs import Verdict, group_key
from replicate.resolved import ResolvedJob

# runs that trained to their end (an early abort, an error or a lost node says nothing of the duration)
USABLE = (Verdict.PASS, Verdict.MEASURED, Verdict.BELOW, Verdict.ABOVE, Verdict.OFF_CURVE)


@dataclass(frozen=True)
class Deadline:
    """How long a job may run once started, and why that long."""

    seconds: float
    basis: str
    expected_s: Optional[float] = None   # the median of the recipe's earlier runs; None: no history

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def recipe_fingerprint(config: Mapping[str, Any]) -> str:
    """What decides a job's duration on a profile, as a short hash: its tier's recipe and sizes,
    the tier's settings, the data it trains on and its worker count (not the seed, the suite or
    where results go)."""
    tier = config["tier"]["name"]
    model_tier = config["model"]["tiers"][tier]
    parts = {"model_tier": model_tier, "tier": config["tier"], "data": config["datasets"].get(model_tier["data"]),
             "workers": config.get("workers"), "num_threads": config.get("num_threads"),
             "variant": config.get("variant"), "defect": config.get("defect")}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def expected_s(rows: Iterable[Mapping[str, Any]]) -> Optional[tuple[float, int]]:
    """The median wall time of earlier finished runs (not the time dead attempts lost), and how
    many runs it is the median of; None without any."""
    walls = [float(r["setup_s"]) + float(r["train_s"]) + float(r["eval_s"]) for r in rows]
    walls = [w for w in walls if w > 0]
    return (statistics.median(walls), len(walls)) if walls else None


def job_deadlines(jobs: list[ResolvedJob], store: Any, scheduler: Any) -> dict[str, Deadline]:
    """The deadline of every job, from the store's history of its recipe on its profile.

    Args:
        jobs: the jobs about to run.
        store: the open results store (``jobs(model=, tier=, limit=)``).
        scheduler: the ``scheduler`` config (``job_timeout_s``, ``deadline_margin``,
            ``deadline_floor_s``, ``deadline_history``).
    """
    margin, floor = float(scheduler.deadline_margin), float(scheduler.deadline_floor_s)
    history, fallback = int(scheduler.deadline_history), float(scheduler.job_timeout_s)
    out: dict[str, Deadline] = {}
    # (model, tier) -> its usable stored runs with their recipe fingerprints, each computed once
    cache: dict[tuple[str, str], list[tuple[dict, str]]] = {}
    for job in jobs:
        spec = job.spec
        key = (spec.model, spec.tier)
        if key not in cache:
            cache[key] = [(r, recipe_fingerprint(r["config"])) for r in store.jobs(model=spec.model, tier=spec.tier,
                                                                                   limit=500)
                          if r["verdict"] in USABLE and r.get("config")]
        fingerprint = recipe_fingerprint(spec.config)
        same = [r for r, printed in cache[key] if printed == fingerprint and group_key(r) == job.group_key][:history]
        measured = expected_s(same)
        if measured is None:
            out[spec.job_id] = Deadline(fallback, "scheduler.job_timeout_s: no earlier finished run of this recipe "
                                                  f"on {spec.hardware}")
            continue
        median, runs = measured
        seconds = max(floor, margin * median)
        why = f"{margin:g} x {median:.0f} s (median of {runs} earlier run(s) of this recipe on {spec.hardware})"
        out[spec.job_id] = Deadline(seconds, why if seconds > floor else f"scheduler.deadline_floor_s ({why} is less)",
                                    median)
    return out


def longest_first(jobs: list[ResolvedJob], deadlines: Mapping[str, Deadline]) -> list[ResolvedJob]:
    """The order to submit jobs in: those without history first (their length is unknown), then
    the longest expected first, each in suite order among equals. Started in suite order, the
    smoke suite's two longest jobs (centernet, pix2pix) came last and ran side by side at the end
    while a core idled: 4 jobs on 2 cores took 116 s of 189 s serial (1.63x); longest first is the
    classic greedy schedule (LPT), within 4/3 of the best."""
    def expected(job: ResolvedJob) -> tuple[int, float]:
        deadline = deadlines.get(job.job_id)
        seconds = deadline.expected_s if deadline is not None else None
        return (0, 0.0) if seconds is None else (1, -seconds)

    return sorted(jobs, key=expected)


def tonight_seconds(deadline: Deadline) -> float:
    """How long a job is expected to take: its recipe's median, else all its deadline allows."""
    return deadline.expected_s if deadline.expected_s is not None else deadline.seconds
