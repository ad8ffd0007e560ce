"""Which jobs of a suite run tonight: each entry's cadence, what changed, and the suite's budget.

A job's *fingerprint* is everything that decides its result: the config hash, the model's own
code, the harness's code, the installed packages (replicate/runner/code_fingerprint.py) and the
dataset's manifest hash. For an entry with a cadence (``every: 1d | 7d | 30d``), a job whose
fingerprint equals that of a PASS of the same group and seed inside the cadence is not run again:
it is recorded UNCHANGED, linking that PASS, at no cost (a deterministic evaluation of the same
bytes by the same code gives the same number; the smoke tier is bit-exact for a seed, kernel set
and thread count). The others run in this order until the suite's budget (``suite.budget``, in the
profiles' currency) is spent: first what is due (never run, or its last run older than its
cadence), then what changed since its last PASS, each stalest first; a job that no longer fits is
left for another night, and said so. Without a budget every job that is not UNCHANGED runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping, Optional, Sequence

from replicate.errors import ConfigError
from replicate.jobs import PASS, Verdict, group_key
from replicate.records import price_of
from replicate.resolved import ResolvedJob
from replicate.runner.code_fingerprint import KEYS as CODE_KEYS
from replicate.runner.code_fingerprint import job_code
from replicate.scheduling.deadlines import Deadline, tonight_seconds

RUN, UNCHANGED, DEFERRED = "run", "unchanged", "deferred"
_CADENCE = re.compile(r"^([1-9][0-9]{0,3})([hd])$")


def cadence_s(every: Optional[str], key: str = "suite.entries[].every") -> Optional[float]:
    """Seconds of a cadence ``Nd`` or ``Nh`` (None: every run); ConfigError naming ``key`` otherwise."""
    if every is None:
        return None
    match = _CADENCE.match(str(every))
    if match is None:
        raise ConfigError(key, f"{every!r} is not a cadence: write it as days or hours, e.g. 1d, 7d, 30d, 12h")
    return int(match.group(1)) * (86400 if match.group(2) == "d" else 3600)


@dataclass(frozen=True)
class Decision:
    """What tonight does with one job, and why, in the lab's words."""

    job_id: str
    action: str                      # run | unchanged | deferred
    reason: str
    unchanged_of: Optional[Mapping[str, Any]] = None   # the PASS row an UNCHANGED job repeats
    cost: float = 0.0                # what it is expected to cost tonight (its bound without history)


def fingerprint(config_hash: str, environment: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a job's fingerprint a stored row records."""
    return {"config_hash": config_hash, **{k: environment.get(k) for k in (*CODE_KEYS, "dataset_hash")}}


def job_fingerprint(job: ResolvedJob, dataset_hash: Optional[str]) -> dict[str, Any]:
    return fingerprint(job.spec.config_hash, {**job_code(job.spec.model, job.spec.framework),
                                              "dataset_hash": dataset_hash})


def _age(row: Mapping[str, Any], now: datetime) -> float:
    created = datetime.fromisoformat(str(row["created_at"]))
    return (now - (created if created.tzinfo else created.replace(tzinfo=timezone.utc))).total_seconds()


def _days(seconds: float) -> str:
    return f"{seconds / 86400:.1f} days" if seconds >= 86400 else f"{seconds / 3600:.1f} hours"


def decide(jobs: Sequence[ResolvedJob], store: Any, *, now: datetime, every: Mapping[str, Optional[float]],
           costs: Mapping[str, float], budget: Optional[float],
           dataset_hashes: Mapping[str, Optional[str]]) -> list[Decision]:
    """Tonight's decision for each of ``jobs`` (see the module docstring), in ``jobs`` order.

    Args:
        every: each job's cadence in seconds (None: every run), by job id.
        costs: each job's expected cost tonight, by job id.
        budget: the suite's budget, or None.
        dataset_hashes: the manifest hash of each job's dataset as verified tonight (None: not
            verified yet, as in a plan: then only the other parts are compared).
    """
    history: dict[tuple[str, str], list[dict[str, Any]]] = {}
    ranked: list[tuple[tuple[int, float], ResolvedJob, str]] = []
    decided: dict[str, Decision] = {}
    for job in jobs:
        spec = job.spec
        if (spec.model, spec.tier) not in history:
            history[(spec.model, spec.tier)] = store.jobs(model=spec.model, tier=spec.tier, limit=1000)
        earlier = [r for r in history[(spec.model, spec.tier)] if r.get("suite_id") != spec.suite_id
                   and group_key(r) == job.group_key and int(r["seed"]) == spec.seed and not r["config"].get("defect")
                   and r["verdict"] != Verdict.UNCHANGED]
        cadence = every.get(job.job_id)
        now_print = job_fingerprint(job, dataset_hashes.get(job.job_id))
        last_pass = next((r for r in earlier if r["verdict"] == PASS), None)
        # the parts of the fingerprint that differ from the last PASS's (a part not known tonight is not compared)
        before = {} if last_pass is None else fingerprint(last_pass["config_hash"], last_pass.get("environment") or {})
        changed = [k for k, v in now_print.items() if last_pass is not None and v is not None and before[k] != v]
        if cadence is not None and last_pass is not None and not changed and _age(last_pass, now) <= cadence:
            decided[job.job_id] = Decision(job.job_id, UNCHANGED,
                                           f"unchanged since its PASS in {last_pass['suite_id']} "
                                           f"({_days(_age(last_pass, now))} ago, every {_days(cadence)})", last_pass)
            continue
        age = _age(earlier[0], now) if earlier else float("inf")
        if not earlier:
            ranked.append(((0, age), job, "due: never run"))
        elif cadence is None:
            ranked.append(((0, age), job, "due: it runs every time"))
        elif age > cadence:
            ranked.append(((0, age), job, f"due: last run {_days(age)} ago (every {_days(cadence)})"))
        elif last_pass is None:
            ranked.append(((1, age), job, "no PASS inside its cadence yet"))
        else:
            ranked.append(((1, age), job, "changed since its last PASS: " + ", ".join(changed)))
    left = budget
    for (_, _), job, reason in sorted(ranked, key=lambda item: (item[0][0], -item[0][1])):
        cost = float(costs.get(job.job_id, 0.0))
        if left is not None and cost > left:
            decided[job.job_id] = Decision(job.job_id, DEFERRED, f"left for another night: {reason}, but its "
                                                                 f"cost {cost:.3g} is more than the budget left "
                                                                 f"({left:.3g})", cost=cost)
            continue
        if left is not None:
            left -= cost
        decided[job.job_id] = Decision(job.job_id, RUN, reason, cost=cost)
    return [decided[job.job_id] for job in jobs]


def tonight_decisions(root: Any, jobs: Sequence[ResolvedJob], store: Any, deadlines: Mapping[str, Deadline], *,
                      dataset_hashes: Mapping[str, Optional[str]]) -> Optional[list[Decision]]:
    """:func:`decide` for a suite run or its plan: each job's cadence, its cost tonight from its
    ``deadlines`` (the median of its recipe's runs, else its deadline; ``scheduler.job_timeout_s``
    for a job without one) and the suite's budget. None when no job has a cadence and the suite
    no budget: every job runs."""
    budget = root.suite.get("budget") if root.get("suite") else None
    if not jobs or (budget is None and all(job.every_s is None for job in jobs)):
        return None
    fallback = Deadline(float(root.scheduler.job_timeout_s), "scheduler.job_timeout_s")
    costs = {j.job_id: price_of(tonight_seconds(deadlines.get(j.job_id, fallback)), j.hardware) for j in jobs}
    return decide(jobs, store, now=datetime.now(timezone.utc), every={j.job_id: j.every_s for j in jobs},
                  costs=costs, budget=None if budget is None else float(budget), dataset_hashes=dataset_hashes)
