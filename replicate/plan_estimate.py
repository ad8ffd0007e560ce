"""What a suite will run and what it will cost, before anything runs: ``replicate suite --plan``
and the head of ``replicate k8s render``.

Each planned job says what it is judged against (the paper's or zoo's claim with its source and
band, or this implementation's own reference: the canary), whether it runs (a job of this suite
id already finished with unchanged code is skipped), and its cost: expected from the median of
the same recipe's earlier runs on the same profile (the store's history, the rule the deadlines
use), and at most what its deadline allows. Costs carry the profile's currency and price source.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional, Sequence

from omegaconf import DictConfig

from replicate.errors import ConfigError, StoreError
from replicate.formatting import duration, price_note, priced
from replicate.records import price_of
from replicate.resolved import ResolvedJob
from replicate.runner.code_fingerprint import code_changed_since
from replicate.scheduling.deadlines import Deadline, job_deadlines
from replicate.scheduling.nightly import DEFERRED, RUN, UNCHANGED, tonight_decisions
from replicate.verdict import target_label


@dataclass(frozen=True)
class PlannedJob:
    """One job of a plan, as the lab reads it before paying for it."""

    job_id: str
    model: str
    framework: str
    tier: str
    hardware: str
    seed: int
    kind: str                    # the target's kind: claim | reference | reference_curve | none
    judged_against: str          # its label: claim (paper/zoo), reference (this implementation), ...
    target: Optional[str]        # "bbox_AP 37 in [36.26, 37.74]", None with nothing to compare with
    target_source: Optional[str]
    status: str                  # runs | skipped: finished with the same config and code | runs again: ...
    expected_s: Optional[float]  # None: no earlier run of this recipe on this profile
    expected_cost: Optional[float]
    cost_bound: float            # the cost at the job's deadline: what it can cost at most
    basis: str                   # why that deadline
    currency: str
    price_source: str
    price_placeholder: bool

    runs: bool = True            # False: skipped, UNCHANGED or left for another night


def _target_text(job: ResolvedJob) -> Optional[str]:
    target = job.target
    if target.value is None or target.low is None or target.high is None:
        return None
    return f"{target.metric} {target.value:.4g} in [{target.low:.4g}, {target.high:.4g}]"


def _status(job: ResolvedJob, store: Any, finished: set[str]) -> str:
    if job.problem:
        return f"recorded as ERROR: {job.problem}"
    if job.job_id not in finished:
        return "runs"
    changed = code_changed_since(store.get_job(job.job_id), job.spec.model, job.spec.framework)
    if changed:
        return f"runs again: {changed} changed"
    return "skipped: finished in this suite id with the same config and code"


def plan_jobs(root: DictConfig, jobs: Sequence[ResolvedJob], store: Optional[Any]) -> list[PlannedJob]:
    """The plan of ``jobs``; ``store`` None: no history (every cost is its bound) and nothing finished."""
    deadlines: dict[str, Deadline] = {}
    finished: set[str] = set()
    if store is not None:
        deadlines = job_deadlines(list(jobs), store, root.scheduler)
        suite_ids = {j.spec.suite_id for j in jobs if j.spec.suite_id}
        for suite_id in suite_ids:
            finished |= store.finished_job_ids(suite_id)
    fallback = Deadline(float(root.scheduler.job_timeout_s), "scheduler.job_timeout_s")
    tonight = _tonight(root, jobs, store, finished, deadlines)
    planned = []
    for job in jobs:
        hardware = job.hardware
        deadline = deadlines.get(job.job_id, fallback)
        status = _status(job, store, finished) if store is not None else (
            "runs" if not job.problem else f"recorded as ERROR: {job.problem}")
        status, runs = tonight.get(job.job_id, (status, status.startswith("runs")))
        planned.append(PlannedJob(
            job_id=job.job_id, model=job.spec.model, framework=job.spec.framework, tier=job.spec.tier,
            hardware=job.spec.hardware, seed=job.seed, kind=job.target.kind,
            judged_against=target_label(job.target.kind),
            target=_target_text(job), target_source=job.target.source,
            status=status, runs=runs,
            expected_s=deadline.expected_s,
            expected_cost=None if deadline.expected_s is None else price_of(deadline.expected_s, hardware),
            cost_bound=price_of(deadline.seconds, hardware), basis=deadline.basis, currency=str(hardware.currency),
            price_source=str(hardware.price_source), price_placeholder=bool(hardware.price_placeholder)))
    return planned


def _tonight(root: DictConfig, jobs: Sequence[ResolvedJob], store: Optional[Any], finished: set[str],
             deadlines: Mapping[str, Deadline]) -> dict[str, tuple[str, bool]]:
    """Each job's decision for tonight (cadence and budget: replicate/scheduling/nightly.py) as
    (status, runs), for the jobs a re-run would not skip; empty without a store, a cadence or a
    budget. The datasets are not verified by a plan: their hashes are compared when the suite runs."""
    candidates = [j for j in jobs if j.job_id not in finished and not j.problem]
    decisions = tonight_decisions(root, candidates, store, deadlines, dataset_hashes={}) if store is not None else None
    if decisions is None:
        return {}
    labels = {RUN: "runs", UNCHANGED: "UNCHANGED", DEFERRED: "not tonight"}
    return {d.job_id: (f"{labels[d.action]}: {d.reason}", d.action == RUN) for d in decisions}


def open_history(root: DictConfig) -> tuple[Optional[Any], Optional[str]]:
    """The store to read history from, without creating one; (None, why) when there is none."""
    from replicate.store.results_store import open_existing

    try:
        return open_existing(root.store), None
    except (ConfigError, StoreError) as exc:
        return None, str(exc)


def totals(planned: Sequence[PlannedJob]) -> dict[str, dict[str, float]]:
    """Per currency: the expected cost of the jobs that run (those with history) and the bound."""
    out: dict[str, dict[str, float]] = {}
    for job in planned:
        if not job.runs:
            continue
        total = out.setdefault(job.currency, {"expected": 0.0, "bound": 0.0, "unknown": 0})
        total["bound"] += job.cost_bound
        if job.expected_cost is None:
            total["unknown"] += 1
        else:
            total["expected"] += job.expected_cost
    return out


# The plan's sections, by what a job is judged against: the question the sponsors pay for first.
SECTIONS = (("claim", "against the paper (or the zoo's published number)"),
            ("reference", "canary: this implementation against its own reference"),
            ("reference_curve", "against a reference curve of this implementation"),
            ("none", "measured only: nothing to compare with"))


def _job_lines(job: PlannedJob) -> list[str]:
    model = job.model if job.framework == "torch" else f"{job.model} ({job.framework})"
    judged = job.target or f"not judged: {job.target_source or 'nothing to compare with'}"
    source = f" ({job.target_source})" if job.target and job.target_source and job.kind == "claim" else ""
    cost = (f"expected {priced(job.expected_cost, job.currency)} ({duration(job.expected_s)})"
            if job.expected_cost is not None else "no earlier run")
    return [f"- {model} {job.tier} on {job.hardware}, seed {job.seed}: {job.status}; {judged}{source}",
            f"    cost: {cost}; at most {priced(job.cost_bound, job.currency)} ({job.basis})"]


def plan_lines(suite_id: str, planned: Sequence[PlannedJob], history_note: Optional[str] = None) -> list[str]:
    """The plan as plain lines (the console prints them; ``k8s render`` writes them as comments)."""
    lines = [f"plan of suite {suite_id}: {sum(j.runs for j in planned)} of {len(planned)} job(s) run"]
    if history_note:
        why = history_note.split(": ", 1)[-1].split(" (", 1)[0]   # "store.url: no store at X (hint)" -> "no store at X"
        lines.append(f"no history ({why}): each cost is its upper bound")
    for kind, title in SECTIONS:
        members = [j for j in planned if j.kind == kind]
        if members:
            lines.append(f"{title} ({len(members)} job(s)):")
            lines += [line for job in members for line in _job_lines(job)]
    for currency, total in totals(planned).items():
        runs = sum(j.runs for j in planned if j.currency == currency)
        if total["unknown"] == runs:
            expected = "expected: unknown (no job has an earlier run)"
        else:
            unknown = f", {int(total['unknown'])} job(s) without an earlier run" if total["unknown"] else ""
            expected = f"expected {priced(total['expected'], currency)}{unknown}"
        lines.append(f"total: {expected}; at most {priced(total['bound'], currency)}")
    note = price_note(asdict(job) for job in planned)
    return lines + ([note] if note else [])


def plan_of_suite(overrides: Sequence[str]) -> tuple[str, list[PlannedJob], list[str]]:
    """Compose the suite of ``overrides``, plan it against the store's history (read-only) and
    return its id, its planned jobs and their lines; nothing runs and nothing is written."""
    from replicate.config.compose import compose_config
    from replicate.plan import plan_suite

    root = compose_config(overrides)
    suite_id, jobs = plan_suite(root, overrides)
    store, why = open_history(root)
    try:
        planned = plan_jobs(root, jobs, store)
    finally:
        if store is not None:
            store.close()
    return suite_id, planned, plan_lines(suite_id, planned, why)
