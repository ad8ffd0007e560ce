"""run_suite / run_one: plan -> schedule -> verdict -> store. Plain functions behind the CLI."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from omegaconf import DictConfig

from replicate.config.compose import compose_config
from replicate.config.infra import build
from replicate.errors import ConfigError, StoreError
from replicate.jobs import ERROR, GROUP_IDENTITY, INFRA, PASS, Failure, JobResult, verdict_counts
from replicate.loggers import log_suite_end, make_logger
from replicate.plan import PlannedJob, make_spec, plan_suite
from replicate.records import group_record, job_record
from replicate.redact import redacted_overrides
from replicate.scheduling import Scheduler
from replicate.store import spool
from replicate.store.results_store import ResultStore
from replicate.verdict import judge_job, target_for


@dataclass
class SuiteResult:
    """What a suite (or a single run) produced: one row per job, one per seed group."""

    suite_id: Optional[str]
    jobs: list[dict[str, Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)   # finished before: not run again
    report: Optional[str] = None      # the suite's HTML report (index.html), if one was written
    logged: Optional[str] = None      # where the logger's output went (W&B), if a logger is on

    @property
    def verdict_rows(self) -> list[dict[str, Any]]:
        """The rows that decide the outcome: the seed groups, else (none judged yet) the jobs."""
        return self.groups or self.jobs

    @property
    def all_pass(self) -> bool:
        """Every verdict is PASS: MEASURED (nothing to compare with) is not, so it exits 1 too."""
        rows = self.verdict_rows
        return bool(rows) and all(r["verdict"] == PASS for r in rows)

    @property
    def counts(self) -> dict[str, int]:
        """How many of :attr:`verdict_rows` have each verdict (PASS and MEASURED apart)."""
        return verdict_counts(self.verdict_rows)


def _store(cfg: DictConfig) -> ResultStore:
    store = build(cfg.store, "store")
    if not isinstance(store, ResultStore):
        raise ConfigError("store._target_", f"{type(store).__name__} is not a ResultStore")
    return store


def _scheduler(cfg: DictConfig) -> Scheduler:
    scheduler = build(cfg.scheduler, "scheduler")
    if not isinstance(scheduler, Scheduler):
        raise ConfigError("scheduler._target_", f"{type(scheduler).__name__} has no run(jobs, on_result)")
    return scheduler


def run_one(overrides: Sequence[str], echo: Callable[[str], None] = print) -> SuiteResult:
    """One job (``replicate run``): compose, schedule, judge, store."""
    cfg = compose_config(overrides)
    spec = make_spec(cfg, cfg.suite_id)
    logger = make_logger(cfg, echo)
    if cfg.suite_id:
        _record_run_suite(cfg, overrides)
    result = _execute(cfg, [PlannedJob(spec, cfg, int(cfg.seed))], cfg.suite_id, echo, skip_finished=False,
                      logger=logger)
    result.logged = logger.where() if logger is not None else None
    return result


def _record_run_suite(cfg: DictConfig, overrides: Sequence[str]) -> None:
    """``replicate run suite_id=X`` files its job under suite X: recorded (and marked finished) when
    the store does not know X yet, so `replicate report suite=X` finds it; an existing suite of
    that id (a job re-run inside a nightly suite) is left as it is."""
    store = _store(cfg)
    try:
        if not any(s["suite_id"] == cfg.suite_id for s in store.suites()):
            store.upsert_suite(cfg.suite_id, "run", {"overrides": redacted_overrides(overrides), "suite": "run"})
            store.finish_suite(cfg.suite_id)
    finally:
        store.close()


def run_suite(overrides: Sequence[str], echo: Callable[[str], None] = print, retry_failed: bool = False) -> SuiteResult:
    """All jobs of a suite via the scheduler; a re-run of the same suite id skips finished jobs
    (INFRA ones always run again; ERROR ones too with ``retry_failed``)."""
    root = compose_config(overrides)
    suite_id, planned = plan_suite(root, overrides)
    store = _store(root)
    # The overrides are recorded for `replicate history`: never a password or key given on the command line.
    store.upsert_suite(suite_id, root.suite.name, {"overrides": redacted_overrides(overrides),
                                                   "suite": root.suite.name})
    store.close()
    logger = make_logger(root, echo)
    result = _execute(root, planned, suite_id, echo, skip_finished=True, logger=logger,
                      rerun=(INFRA, ERROR) if retry_failed else (INFRA,))
    store = _store(root)
    store.finish_suite(suite_id)
    report = _write_report(store, suite_id, root.results_dir, echo)
    result.report = str(report) if report is not None else None
    result.logged = log_suite_end(store, suite_id, report.parent if report is not None else None, logger, echo)
    store.close()
    return result


def _write_report(store: Any, suite_id: str, results_dir: str, echo: Callable[[str], None]) -> Optional[Path]:
    """The suite's HTML report where ``replicate report`` writes it by default; its index.html.

    A report failure never fails the suite: the store already holds every result, so one line
    says so and the verdicts stand (None is returned).
    """
    from replicate.report import default_report_dir, write_report

    try:
        return write_report(store, suite_id, default_report_dir(results_dir, suite_id))
    except Exception as exc:   # noqa: BLE001 - the report is a view of the store, never a verdict
        echo(f"report: failed ({type(exc).__name__}: {exc}); the store has every result")
        return None


def _execute(root: DictConfig, planned: list[PlannedJob], suite_id: Optional[str],
             echo: Callable[[str], None], *, skip_finished: bool, logger: Any = None,
             judge_groups: bool = True, rerun: Sequence[str] = (INFRA,)) -> SuiteResult:
    store = _store(root)
    spool.drain(spool.spool_dir(root.results_dir), store, echo)   # results kept while the store was down
    out = SuiteResult(suite_id)
    done_ids = store.finished_job_ids(suite_id, rerun) if (skip_finished and suite_id) else set()
    by_id = {p.spec.job_id: p for p in planned}
    runnable = []
    for job in planned:
        if job.spec.job_id in done_ids:
            out.skipped.append(job.spec.job_id)
        elif job.problem:
            result = JobResult(job_id=job.spec.job_id,
                               failure=Failure("modeling", "incorrect functionality", job.problem))
            _record(store, job, result, out, echo, len(planned), logger)
        else:
            runnable.append(job)
    if out.skipped:
        hint = "" if ERROR in rerun else "; --retry-failed runs the ERROR ones again"
        echo(f"suite {suite_id}: {len(out.skipped)} finished job(s) skipped (already in the store{hint})")
    _preflight_data(runnable, echo)
    if runnable:
        scheduler = _scheduler(root)
        echo(f"running {len(runnable)} job(s) with {type(scheduler).__name__} ...")
        scheduler.run([(j.spec, j.cfg) for j in runnable],
                             lambda spec, result: _record(store, by_id[spec.job_id], result, out, echo, len(planned),
                                                          logger))
    for job_id in out.skipped:
        out.jobs.append(store.get_job(job_id))
    # judge_groups=False: a measurement of the benchmark itself (replicate selftest), not a replication.
    out.groups = _judge_groups(store, planned, out, suite_id) if judge_groups else []
    store.close()
    return out


def _preflight_data(jobs: list[PlannedJob], echo: Callable[[str], None]) -> None:
    """Check (and generate, if synthetic) every dataset once, before any job is scheduled.

    A missing or corrupt file is then a DataError naming it (exit 2) instead of one ERROR per
    job, and concurrent workers never race to generate the same synthetic set.
    """
    from replicate.data.prepare import prepare_dataset

    seen: set[str] = set()
    for job in jobs:
        data = job.cfg.datasets[job.cfg.model.tiers[job.cfg.tier.name].data]
        if data.root in seen:
            continue
        seen.add(data.root)
        echo(f"data {data.name}: {data.root} (manifest {prepare_dataset(data)[:12]})")


def _record(store: Any, job: PlannedJob, result: JobResult, out: SuiteResult, echo: Callable[[str], None],
            total: int, logger: Any = None) -> None:
    target = target_for(job.cfg, job.spec.variant)
    verdict, failure = judge_job(result, target)
    record = job_record(job.spec, result, verdict, failure, target, job.cfg.hardware)
    try:
        store.save_job(record)
        out.jobs.append(store.get_job(job.spec.job_id))
    except StoreError as exc:   # the result outlives the store: spooled, written at the next start
        kept = spool.put(spool.spool_dir(job.cfg.results_dir), "job", record)
        echo(f"{exc}; the result is kept in {kept} and written to the store at the next start")
        out.jobs.append(dict(record))
    value = record["metric_value"]
    shown = f"{record['metric_name']}={value:.4g}" if value is not None else (failure.message if failure else "")
    echo(f"[{len(out.jobs)}/{total}] {job.spec.job_id}: {verdict} {shown} ({record['wall_s']:.0f}s)")
    if logger is not None:
        # The stored row, logged from the driver after it is saved: W&B shows the store's values,
        # and only this process logs (never a Ray worker or a training rank), once per job.
        logger.log_job(out.jobs[-1])


def _judge_groups(store: Any, planned: list[PlannedJob], out: SuiteResult, suite_id: Optional[str]) -> list[dict]:
    """Aggregate seeds of the same model x variant x framework x tier x hardware."""
    rows = {r["job_id"]: r for r in out.jobs if r}
    key = lambda p: tuple(getattr(p.spec, name) for name in GROUP_IDENTITY)  # noqa: E731
    groups = []
    for (model, variant, framework, tier, hardware), grouped in itertools.groupby(sorted(planned, key=key), key):
        # An injected job (defect=NAME) never counts in a group verdict: it must not pass for a real one.
        members = [m for m in grouped if m.spec.job_id in rows and not m.cfg.get("defect")]
        if not members:
            continue
        target = target_for(members[0].cfg, variant)
        triples = [(m.seed, _result_of(rows[m.spec.job_id]), rows[m.spec.job_id]["verdict"]) for m in members]
        identity = {"model": model, "variant": variant, "framework": framework, "tier": tier, "hardware": hardware}
        record = group_record(suite_id, identity, triples, target)
        if suite_id:
            try:
                store.save_group(record)
            except StoreError:   # the jobs' lines already said where their results went
                spool.put(spool.spool_dir(members[0].cfg.results_dir), "group", record)
        groups.append(record)
    return groups


def _result_of(row: dict[str, Any]) -> JobResult:
    """Rebuild the parts of a JobResult the group verdict reads from a stored row."""
    failure = None
    if row.get("failure_stage"):
        failure = Failure(row["failure_stage"], row["failure_impact"], row.get("failure_message") or "")
    return JobResult(job_id=row["job_id"], metrics=row.get("metrics") or {}, failure=failure,
                     early_check=row.get("early_check") or {}, infra=row["verdict"] == "INFRA")
