"""``replicate selftest``: measure the benchmark's power by injecting the defect catalogue.

For each selected defect (replicate/defects), on the implementation it is injected into:

1. the pre-flight check (``replicate check``'s logic, replicate/check.py) on the defective job;
   a check that passes on the clean job and fails on the defective one catches it there;
2. otherwise the smoke job with the defect, through the normal harness (scheduler, store, W&B,
   the 25% early check and the final verdict).

Every implementation involved also runs its clean control, the same job without a defect. All
jobs run on :data:`replicate.power.SELFTEST_SEED`, a seed no reference was calibrated on. The rows
(replicate.power) go to the store and to the report's "benchmark power" page. The selftest is a
measurement: it completes (exit 0) whatever it finds.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from replicate.config.overrides import Overrides
from replicate.defects import Defect, Target, all_defects
from replicate.errors import ConfigError
from replicate.jobs import INFRA, PASS
from replicate.power import CONTROL, DEFECT, FLAGGING_VERDICTS, SELFTEST_SEED, catch, summarize

SUITE_NAME = "selftest"
FILTER_KEYS = ("model", "framework", "defect")   # select what to inject; not passed to the jobs
FIXED_KEYS = ("seed", "tier", "suite")           # the selftest fixes these itself

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Preflight:
    """One pre-flight check's outcome: which checks failed and how long it took."""

    failed: tuple[str, ...]
    seconds: float
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"ok": not self.failed, "failed": list(self.failed), "seconds": round(self.seconds, 3),
                "detail": self.detail}


@dataclass
class SelftestResult:
    suite_id: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    report: Optional[str] = None
    logged: Optional[str] = None


def split_overrides(overrides: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """(filters: model, framework, defect) and the overrides every job gets (results_dir, ...).

    Raises:
        ConfigError: an override of a key the selftest fixes (seed, tier, suite).
    """
    parsed = Overrides.parse(overrides)
    fixed = sorted(parsed.keys() & set(FIXED_KEYS))
    if fixed:
        raise ConfigError(fixed[0], f"the selftest fixes it (tier smoke, seed {SELFTEST_SEED}, no suite config)")
    filters = {key: str(parsed.value(key)) for key in FILTER_KEYS if parsed.has(key)}
    return filters, parsed.without(*FILTER_KEYS).as_list()


def select_injections(model: Optional[str] = None, framework: Optional[str] = None,
                      defect: Optional[str] = None) -> list[tuple[Defect, Target]]:
    """The (defect, implementation) pairs to inject.

    Without a model, each defect goes into its first target; with ``model`` (and ``framework``),
    every defect that applies to it goes into it. ``defect`` (a name, or names separated by
    commas) keeps only those.

    Raises:
        ConfigError: an unknown defect, or nothing of the catalogue applies to the selection.
    """
    from replicate.defects import get_defect

    names = [n.strip() for n in (defect or "").split(",") if n.strip()]
    defects = [get_defect(name) for name in names] if names else all_defects()
    chosen = []
    for item in defects:
        targets = [t for t in item.targets if (model is None or t.model == model)
                   and (framework is None or t.framework == framework)]
        if model is None and framework is None:
            targets = targets[:1]
        chosen += [(item, target) for target in targets]
    if not chosen:
        what = ", ".join(f"{k}={v}" for k, v in (("model", model), ("framework", framework), ("defect", defect)) if v)
        raise ConfigError("defect" if defect else "model", f"no defect of the catalogue applies to {what}")
    return chosen


def job_overrides(target: Target, defect: Optional[str], passthrough: Sequence[str]) -> list[str]:
    """The overrides of one selftest job (pre-flight check or smoke job) of ``target``."""
    return [f"model={target.model}", f"framework={target.framework}", "tier=smoke", f"seed={SELFTEST_SEED}",
            *passthrough, *([f"defect={defect}"] if defect else [])]


def run_preflight(target: Target, defect: Optional[str], passthrough: Sequence[str]) -> Preflight:
    """``replicate check``'s checks on the job; a check that crashes counts as failed."""
    from replicate.check import run_check

    began = time.perf_counter()
    try:
        report = run_check(job_overrides(target, defect, passthrough), echo=lambda _line: None)
    except Exception as exc:  # noqa: BLE001 - a check that crashes failed (every job was composed before)
        return Preflight(("crashed",), time.perf_counter() - began, f"{type(exc).__name__}: {exc}"[:300])
    failed = tuple(c["check"] for c in report.checks if not c["ok"])
    detail = "; ".join(f"{c['check']}: {c['detail']}" for c in report.checks if not c["ok"])
    return Preflight(failed, time.perf_counter() - began, detail[:500])


def preflight_catch(defective: Preflight, clean: Preflight) -> tuple[str, ...]:
    """The checks that fail with the defect and pass without it (a check the clean job already
    fails says nothing about the defect)."""
    return tuple(name for name in defective.failed if name not in clean.failed)


def default_suite_id() -> str:
    return f"{SUITE_NAME}-{dt.datetime.now(dt.timezone.utc):%Y%m%d}"


def run_selftest(overrides: Sequence[str], echo: Echo = print) -> SelftestResult:
    """Inject the selected defects, run their pre-flight checks, smoke jobs and clean controls,
    and record the rows (store, report)."""
    from replicate.config.compose import compose_config
    from replicate.harness import SuiteRun
    from replicate.loggers import make_logger
    from replicate.resolved import ResolvedJob, resolve_job

    filters, passthrough = split_overrides(overrides)
    injections = select_injections(filters.get("model"), filters.get("framework"), filters.get("defect"))
    root = compose_config(passthrough)
    suite_id = root.suite_id or default_suite_id()
    passthrough = Overrides.parse(passthrough).without("suite_id").plus(f"suite_id={suite_id}").as_list()
    targets = list(dict.fromkeys(target for _, target in injections))

    def planned(target: Target, defect: Optional[str]) -> ResolvedJob:
        return resolve_job(compose_config(job_overrides(target, defect, passthrough)), suite_id)

    # Every job is composed first: a bad override fails here (exit 2), before any work.
    controls = {t: planned(t, None) for t in targets}
    injected = {(d.name, t): planned(t, d.name) for d, t in injections}
    echo(f"selftest {suite_id}: {len(injections)} defect(s) on {len(targets)} implementation(s), "
         f"seed {SELFTEST_SEED}")

    clean = {t: _preflight(t, None, passthrough, echo) for t in targets}
    checks = {(d.name, t): _preflight(t, d.name, passthrough, echo) for d, t in injections}
    caught = {key: preflight_catch(check, clean[key[1]]) for key, check in checks.items()}
    smoke = {key: job for key, job in injected.items() if not caught[key]}
    logger = make_logger(root, echo)
    with SuiteRun(root, suite_id, echo, logger) as run:
        run.register(SUITE_NAME, overrides)
        result = run.execute([*controls.values(), *smoke.values()], skip_finished=True, judge_groups=False)
        jobs = {row["job_id"]: row for row in result.jobs if row}
        rows = [control_row(t, jobs.get(controls[t].job_id), clean[t]) for t in targets]
        for defect, target in injections:
            key = (defect.name, target)
            job = jobs.get(smoke[key].job_id) if key in smoke else None
            rows.append(defect_row(defect, target, job, checks[key], caught[key], jobs.get(controls[target].job_id)))
        run.store.save_selftest(suite_id, rows)
        run.store.finish_suite(suite_id)
        report = run.write_report()
        mine = {_key(row) for row in rows}   # the suite may hold rows of earlier runs (the report shows all)
        saved = [row for row in run.store.selftest_rows(suite_id) if _key(row) in mine]
    return SelftestResult(suite_id, saved, summarize(saved), str(report) if report else None,
                          logger.where() if logger is not None else None)


def _key(row: dict[str, Any]) -> tuple:
    from replicate.store.results_store import SELFTEST_KEY

    return tuple(row.get(k) for k in SELFTEST_KEY)


def _preflight(target: Target, defect: Optional[str], passthrough: Sequence[str], echo: Echo) -> Preflight:
    check = run_preflight(target, defect, passthrough)
    outcome = "ok" if not check.failed else f"fails {', '.join(check.failed)}"
    echo(f"pre-flight {target}{' + ' + defect if defect else ' (clean)'}: {outcome} ({check.seconds:.0f}s)")
    return check


def control_row(target: Target, job: Optional[dict[str, Any]], check: Preflight) -> dict[str, Any]:
    """The row of a clean control: its verdict; flagged means a false alarm."""
    verdict = job["verdict"] if job else None
    return {"role": CONTROL, "defect": None, "model": target.model, "framework": target.framework,
            "job_id": job["job_id"] if job else None, "verdict": verdict, "flagged": verdict in FLAGGING_VERDICTS,
            "caught_at": None, "cost_share": None, "preflight": check.to_dict()}


def defect_row(defect: Defect, target: Target, job: Optional[dict[str, Any]], check: Preflight,
               caught: tuple[str, ...], control: Optional[dict[str, Any]]) -> dict[str, Any]:
    """The row of one injected defect: where it was caught and at what share of a clean run's cost."""
    verdict = job["verdict"] if job else None
    judged = verdict
    if not caught and verdict is not None and (control is None or control["verdict"] != PASS):
        # The clean control was flagged too (or did not run): a flag on the defect says nothing,
        # so the row is not measured (left out of the flagged share), whatever its verdict.
        judged = INFRA
    found = catch(judged, caught_by_preflight=bool(caught), preflight_s=check.seconds,
                  job_wall_s=job.get("wall_s") if job else None,
                  control_wall_s=control.get("wall_s") if control else None,
                  steps_done=int(job.get("steps_done") or 0) if job else 0,
                  steps_planned=int(job.get("steps_planned") or 0) if job else 0)
    return {"role": DEFECT, "defect": defect.name, "model": target.model, "framework": target.framework,
            "stage": defect.stage, "defect_type": defect.type, "description": defect.description,
            "job_id": job["job_id"] if job else None, "verdict": verdict, "flagged": found.flagged,
            "caught_at": found.caught_at, "cost_share": found.cost_share,
            "preflight": {**check.to_dict(), "caught_by": list(caught)}}
