"""run_suite / run_one: plan -> schedule -> verdict -> store, through one :class:`SuiteRun`.

A SuiteRun holds what a run of jobs shares: one open store, the results in memory (the seed
groups are judged from them, not re-read from the store), and its sinks, told of every stored
job row in turn: the console line (:class:`ConsoleSink`) and the experiment logger (W&B). The
report is written from the store when the suite finishes. ``replicate suite``, ``replicate run``
and ``replicate selftest`` run their jobs through it; calibration draws are not judged jobs and
keep no store (replicate/calibrate.py).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Protocol, Sequence

from omegaconf import DictConfig

from replicate.config.compose import compose_config
from replicate.config.infra import build
from replicate.config.selection import job_data
from replicate.entry_checks import check_checkpoints, check_input_sizes
from replicate.errors import ConfigError, DataError, StoreError
from replicate.history import Drift, Regression
from replicate.jobs import ERROR, INFRA, PASS, UNCHANGED, Failure, JobResult, verdict_counts
from replicate.loggers import RunLogger, log_suite_end, make_logger
from replicate.plan import plan_suite
from replicate.records import GroupRecord, group_record, job_record
from replicate.redact import redacted_overrides, redacting
from replicate.reference_runs import PROMOTED, applies, candidate, takes_curve, with_lab_reference
from replicate.report.alerts import report_link, send_alerts, suite_alerts
from replicate.resolved import ResolvedJob, resolve_job
from replicate.runner.code_fingerprint import code_changed_since, job_code
from replicate.scheduling import Scheduler
from replicate.scheduling.deadlines import Deadline, job_deadlines, longest_first
from replicate.scheduling.nightly import DEFERRED, Decision, tonight_decisions
from replicate.scheduling.nightly import UNCHANGED as UNCHANGED_ACTION
from replicate.store import spool
from replicate.store.protocol import JobStore
from replicate.verdict import judge_job

Echo = Callable[[str], None]


@dataclass
class SuiteResult:
    """What a suite (or a single run) produced: one row per job, one per seed group."""

    suite_id: Optional[str]
    jobs: list[dict[str, Any]] = field(default_factory=list)
    groups: list[GroupRecord] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)   # finished before: not run again
    deferred: list[str] = field(default_factory=list)  # "job id: why", left for another night by the budget
    report: Optional[str] = None      # the suite's HTML report (index.html), if one was written
    logged: Optional[str] = None      # where the logger's output went (W&B), if a logger is on
    alerts: list[str] = field(default_factory=list)   # the titles of the alerts the suite raised

    @property
    def verdict_rows(self) -> Sequence[Mapping[str, Any]]:
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


class JobSink(Protocol):
    """Told of each job as its row is stored: ``position`` of ``total`` jobs of the run."""

    def job(self, row: Mapping[str, Any], position: int, total: int) -> None: ...


class ConsoleSink:
    """One line per finished job: ``[3/8] JOB_ID: VERDICT metric=value (seconds)``."""

    def __init__(self, echo: Echo):
        self.echo = echo

    def job(self, row: Mapping[str, Any], position: int, total: int) -> None:
        value = row.get("metric_value")
        shown = f"{row['metric_name']}={value:.4g}" if value is not None else (row.get("failure_message") or "")
        self.echo(f"[{position}/{total}] {row['job_id']}: {row['verdict']} {shown} ({row['wall_s']:.0f}s)")


class LoggerSink:
    """The experiment logger (W&B) gets the stored row, logged from the driver after it is saved:
    W&B shows the store's values, and only this process logs (never a Ray worker), once per job."""

    def __init__(self, logger: RunLogger):
        self.logger = logger

    def job(self, row: Mapping[str, Any], position: int, total: int) -> None:
        self.logger.log_job(dict(row))


def open_store(cfg: DictConfig) -> JobStore:
    """The results store of ``cfg.store`` (its ``_target_`` must build a JobStore)."""
    store = build(cfg.store, "store")
    if not isinstance(store, JobStore):
        raise ConfigError("store._target_", f"{type(store).__name__} is not a JobStore (replicate/store/protocol.py)")
    return store


def open_scheduler(cfg: DictConfig) -> Scheduler:
    scheduler = build(cfg.scheduler, "scheduler")
    if not isinstance(scheduler, Scheduler):
        raise ConfigError("scheduler._target_", f"{type(scheduler).__name__} has no run(jobs, on_result)")
    return scheduler


class SuiteRun:
    """The jobs of one suite id run against one open store.

    Use as a context manager (the store is closed on the way out)::

        with SuiteRun(root, suite_id, echo, logger=make_logger(root, echo)) as run:
            run.register(name, overrides)
            result = run.execute(jobs, skip_finished=True)
            run.finish(result)
    """

    def __init__(self, root: DictConfig, suite_id: Optional[str], echo: Echo = print,
                 logger: Optional[RunLogger] = None):
        echo = redacting(echo)   # a store's or a dataset's error, echoed, never shows a credential
        self.root, self.suite_id, self.echo, self.logger = root, suite_id, echo, logger
        self.sinks: list[JobSink] = [ConsoleSink(echo), *([LoggerSink(logger)] if logger is not None else [])]
        self.store = open_store(root)
        self.results: dict[str, JobResult] = {}   # the jobs run now, by id: the group verdicts read them
        self.deadlines: dict[str, Deadline] = {}   # the running jobs' deadlines, by id

    def __enter__(self) -> "SuiteRun":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.store.close()

    # ------------------------------------------------------------------ suite
    def register(self, name: str, overrides: Sequence[str]) -> None:
        """Record the suite and its overrides for `replicate history` (never a password or key)."""
        assert self.suite_id is not None
        self.store.upsert_suite(self.suite_id, name, {"overrides": redacted_overrides(overrides), "suite": name})

    def finish(self, result: SuiteResult) -> None:
        """Mark the suite finished, write its report and log the leaderboard."""
        assert self.suite_id is not None
        self.store.finish_suite(self.suite_id)
        found = self.findings()   # read once: the report shows them, the alerts tell them
        report = self.write_report(found)
        result.report = str(report) if report is not None else None
        alerts = suite_alerts(*(found or ([], [])), self.suite_id, report_link(result.report), result.deferred)
        result.alerts = [alert.title for alert in alerts]
        result.logged = log_suite_end(self.store, self.suite_id, report.parent if report is not None else None,
                                      self.logger, self.echo, alerts)
        send_alerts(self.suite_id, alerts, self.echo)

    def findings(self) -> Optional[tuple[list[Regression], list[Drift]]]:
        """The suite's regressions and drifts, for its report and its alerts; None when they cannot
        be read (the report then reads them itself, and no regression is told)."""
        from replicate.report.pages import findings

        assert self.suite_id is not None
        try:
            return findings(self.store, self.suite_id)
        except Exception as exc:   # noqa: BLE001 - a view of the store, never a verdict
            self.echo(f"alerts: not computed ({type(exc).__name__}: {exc}); the store has every result")
            return None

    def write_report(self, found: Optional[tuple[list[Regression], list[Drift]]] = None) -> Optional[Path]:
        """The suite's HTML report where ``replicate report`` writes it by default; its index.html.

        A report failure never fails the suite: the store already holds every result, so one line
        says so and the verdicts stand (None is returned).
        """
        from replicate.report import default_report_dir, write_report

        assert self.suite_id is not None
        try:
            return write_report(self.store, self.suite_id, default_report_dir(self.root.results_dir, self.suite_id),
                                found)
        except Exception as exc:   # noqa: BLE001 - the report is a view of the store, never a verdict
            self.echo(f"report: failed ({type(exc).__name__}: {exc}); the store has every result")
            return None

    # ------------------------------------------------------------------- jobs
    def execute(self, jobs: list[ResolvedJob], *, skip_finished: bool, judge_groups: bool = True,
                rerun: Sequence[str] = (INFRA,), missing_data_is_infra: bool = False) -> SuiteResult:
        """Run ``jobs`` (those finished before are skipped with ``skip_finished``), record each
        as it ends, then judge the seed groups (``judge_groups=False``: a measurement of the
        benchmark itself, replicate selftest, not a replication).

        A dataset that is missing or fails its manifest stops everything (DataError, exit 2),
        unless ``missing_data_is_infra``: then its jobs are INFRA, naming the dataset, and every
        job whose data is present still runs (a nightly suite on a half-filled data volume).
        """
        spool.drain(spool.spool_dir(self.root.results_dir), self.store, self.echo)   # kept while the store was down
        out = SuiteResult(self.suite_id)
        done_ids = self.store.finished_job_ids(self.suite_id, rerun) if (skip_finished and self.suite_id) else set()
        runnable = []
        for job in jobs:
            if job.job_id in done_ids and not self.code_changed(job):
                out.skipped.append(job.job_id)
            elif job.problem:
                self.record(job, JobResult(job_id=job.job_id,
                                           failure=Failure("modeling", "incorrect functionality", job.problem)),
                            out, len(jobs))
            else:
                runnable.append(job)
        if out.skipped:
            hint = "" if ERROR in rerun else "; --retry-failed runs the ERROR ones again"
            self.echo(f"suite {self.suite_id}: {len(out.skipped)} finished job(s) skipped (already in the store{hint})")
        check_input_sizes(runnable)   # a config error: exit 2, nothing recorded
        manifests: dict[str, str] = {}
        broken = preflight_data(runnable, self.echo, keep_going=missing_data_is_infra, manifests=manifests)
        for job in [j for j in runnable if data_of(j).root in broken]:
            data = data_of(job)
            self.record(job, JobResult(job_id=job.job_id, infra=True, failure=Failure(
                "infrastructure", "crash", f"dataset {data.name} unavailable: {broken[data.root]}")), out, len(jobs))
        runnable = [j for j in runnable if data_of(j).root not in broken]
        unweighted = preflight_weights(runnable, self.echo, keep_going=missing_data_is_infra)
        for job in [j for j in runnable if j.job_id in unweighted]:
            self.record(job, JobResult(job_id=job.job_id, infra=True, failure=Failure(
                "infrastructure", "crash", unweighted[job.job_id])), out, len(jobs))
        runnable = [j for j in runnable if j.job_id not in unweighted]
        check_checkpoints(runnable)   # checkpoint= loads into the model, else exit 2 naming the file
        if runnable:   # what each job is allowed: its duration tonight, and its cost (cadence and budget)
            try:
                self.deadlines = job_deadlines(runnable, self.store, self.root.scheduler)
            except StoreError as exc:   # no history to read: every job gets scheduler.job_timeout_s
                self.echo(f"deadlines: the store cannot be read ({exc}); scheduler.job_timeout_s for every job")
        if skip_finished:   # a suite: each entry's cadence and the suite's budget decide what runs tonight
            runnable = self.tonight(runnable, manifests, out, len(jobs))
        runnable = self.with_lab_references(runnable)
        if runnable:
            scheduler = open_scheduler(self.root)
            runnable = longest_first(runnable, self.deadlines)
            self.echo(f"running {len(runnable)} job(s) with {type(scheduler).__name__} ...")
            scheduler.run(runnable, lambda job, result: self.record(job, result, out, len(jobs)), self.deadlines)
        for job_id in out.skipped:
            row = self.store.get_job(job_id)
            if row is not None:
                out.jobs.append(row)
        out.groups = self.judge_groups(jobs, out) if judge_groups else []
        return out

    def tonight(self, jobs: list[ResolvedJob], manifests: Mapping[str, str], out: SuiteResult,
                total: int) -> list[ResolvedJob]:
        """The jobs to run tonight (replicate/scheduling/nightly.py): an UNCHANGED one is recorded
        as such, linking its PASS; one the budget leaves out is said and not recorded."""
        try:
            decisions = tonight_decisions(self.root, jobs, self.store, self.deadlines,
                                          dataset_hashes={j.job_id: manifests.get(data_of(j).root) for j in jobs})
        except StoreError as exc:   # no history to decide from: every job runs, as without a cadence
            self.echo(f"cadence and budget: the store cannot be read ({exc}); every job runs")
            return jobs
        if decisions is None:
            return jobs
        runnable = []
        for job, decision in zip(jobs, decisions):
            if decision.action == UNCHANGED_ACTION:
                assert decision.unchanged_of is not None
                self.record_unchanged(job, decision, out, total)
            elif decision.action == DEFERRED:
                out.deferred.append(f"{job.job_id}: {decision.reason}")
                self.echo(f"job {job.job_id}: {decision.reason}")
            else:
                runnable.append(job)
        return runnable

    def record_unchanged(self, job: ResolvedJob, decision: Decision, out: SuiteResult, total: int) -> None:
        """Store an UNCHANGED row: the PASS's metrics, a link to it, no cost."""
        passed = decision.unchanged_of or {}
        # record() adds the code's hashes, as to every row
        result = JobResult(job_id=job.job_id, metrics=dict(passed.get("metrics") or {}),
                           environment={"dataset_hash": (passed.get("environment") or {}).get("dataset_hash"),
                                        "unchanged_of": passed.get("job_id"), "unchanged_reason": decision.reason})
        self.record(job, result, out, total, verdict=UNCHANGED)

    def with_lab_references(self, jobs: list[ResolvedJob]) -> list[ResolvedJob]:
        """Each full-tier job with its 25% check, and each short-tier job with its target, from the
        lab's promoted reference runs (replicate/reference_runs.py); unchanged when none apply or
        the store cannot say."""
        if not any(applies(job) or takes_curve(job) for job in jobs):
            return jobs
        try:
            runs = self.store.reference_runs(status=PROMOTED)
        except StoreError as exc:
            self.echo(f"reference runs: not read ({exc}); the 25% points are measured, not judged")
            return jobs
        return [with_lab_reference(job, runs) for job in jobs]

    def offer_reference(self, job: ResolvedJob, verdict: str, record: Mapping[str, Any]) -> None:
        """A job that passed its claims becomes a candidate reference run (promoted by hand)."""
        offer = candidate(job, verdict, record)
        if offer is None:
            return
        try:
            run_id = self.store.add_reference_run(offer)
        except StoreError as exc:
            self.echo(f"reference runs: job {job.job_id} not offered ({exc})")
            return
        self.echo(f"job {job.job_id}: candidate reference run {run_id} for the 25% check of its recipe "
                  f"(replicate reference promote {run_id})")

    def code_changed(self, job: ResolvedJob) -> bool:
        """Whether the code that computes ``job`` differs from the code its stored row was
        computed by (a row from before these hashes were recorded counts as changed): the skip
        of a finished job is keyed by its config and its code, so an edited model runs again."""
        changed = code_changed_since(self.store.get_job(job.job_id), job.spec.model, job.spec.framework)
        if changed:
            self.echo(f"job {job.job_id}: {changed} changed since its stored result: running it again")
        return changed is not None

    def record(self, job: ResolvedJob, result: JobResult, out: SuiteResult, total: int,
               verdict: Optional[str] = None) -> None:
        """Judge a finished job (``verdict``: already decided, e.g. UNCHANGED), store its row
        (spooled if the store is down) and tell the sinks."""
        if job.job_id in self.deadlines:   # what the job was allowed, beside what it took
            result.environment.setdefault("deadline", self.deadlines[job.job_id].to_dict())
        # what computed it (the skip key's second half)
        for key, value in job_code(job.spec.model, job.spec.framework).items():
            result.environment.setdefault(key, value)
        verdict, failure = judge_job(result, job.target) if verdict is None else (verdict, None)
        self.results[job.job_id] = result
        record = job_record(job.spec, result, verdict, failure, job.target, job.hardware)
        try:
            self.store.save_job(record)
            out.jobs.append(self.store.get_job(job.job_id) or dict(record))
            self.offer_reference(job, verdict, record)
        except StoreError as exc:   # the result outlives the store: spooled, written at the next start
            kept = spool.put(spool.spool_dir(job.cfg.results_dir), "job", record)
            self.echo(f"{exc}; the result is kept in {kept} and written to the store at the next start")
            out.jobs.append(dict(record))
        for sink in self.sinks:
            sink.job(out.jobs[-1], len(out.jobs), total)

    def judge_groups(self, jobs: list[ResolvedJob], out: SuiteResult) -> list[GroupRecord]:
        """Aggregate the seeds of each model x variant x framework x tier x hardware."""
        rows = {r["job_id"]: r for r in out.jobs if r}
        groups = []
        for _, grouped in itertools.groupby(sorted(jobs, key=lambda j: j.group_key), lambda j: j.group_key):
            # An injected job (defect=NAME) never counts in a group verdict: it must not pass for a real one.
            members = [m for m in grouped if m.job_id in rows and not m.injected]
            if not members:
                continue
            triples = [(m.seed, self.result_of(m.job_id, rows[m.job_id]), rows[m.job_id]["verdict"]) for m in members]
            record = group_record(self.suite_id, vars(members[0].spec), triples, members[0].target)
            if all(verdict == UNCHANGED for _, _, verdict in triples):   # judged from the PASS it repeats
                record["noise_note"] = "not run again: every seed unchanged since its PASS (see the jobs)"
            if self.suite_id:
                try:
                    self.store.save_group(record)
                except StoreError:   # the jobs' lines already said where their results went
                    spool.put(spool.spool_dir(members[0].cfg.results_dir), "group", record)
            groups.append(record)
        return groups

    def result_of(self, job_id: str, row: dict[str, Any]) -> JobResult:
        """The job's result: from memory when it ran now, else rebuilt from its stored row (the
        parts a group verdict reads)."""
        if job_id in self.results:
            return self.results[job_id]
        failure = None
        if row.get("failure_stage"):
            failure = Failure(row["failure_stage"], row["failure_impact"], row.get("failure_message") or "")
        return JobResult(job_id=row["job_id"], metrics=row.get("metrics") or {}, failure=failure,
                         early_check=row.get("early_check") or {}, infra=row["verdict"] == INFRA)


def data_of(job: ResolvedJob) -> DictConfig:
    """The dataset config the job's tier reads."""
    return job_data(job.cfg)


def preflight_data(jobs: list[ResolvedJob], echo: Echo, keep_going: bool = False,
                   manifests: Optional[dict[str, str]] = None) -> dict[str, str]:
    """Check (and generate, if synthetic) every dataset once, before any job is scheduled.

    A missing or corrupt file is then a DataError naming it (exit 2) instead of one ERROR per
    job, and concurrent workers never race to generate the same synthetic set. With
    ``keep_going`` the error is returned instead, per dataset root.

    Returns:
        ``{root: why}`` of the datasets that cannot be used (empty unless ``keep_going``);
        ``manifests``, when given, gets ``{root: manifest hash}`` of those that can.
    """
    from replicate.data.prepare import prepare_dataset

    seen: set[str] = set()
    broken: dict[str, str] = {}
    for job in jobs:
        data = data_of(job)
        if data.root in seen:
            continue
        seen.add(data.root)
        try:
            manifest = prepare_dataset(data)
            echo(f"data {data.name}: {data.root} (manifest {manifest[:12]})")
            if manifests is not None:
                manifests[data.root] = manifest
        except DataError as exc:
            if not keep_going:
                raise
            broken[data.root] = str(exc)
            echo(f"data {data.name}: {exc}; its jobs are INFRA, the others run")
    return broken


def preflight_weights(jobs: list[ResolvedJob], echo: Echo, keep_going: bool = False) -> dict[str, str]:
    """Every weights file a job loads (an eval tier's released checkpoint, ``checkpoint=``, a
    training tier's pretrained trunk, the segmenter that measures it) is there before anything
    is scheduled (its hash is checked where it is loaded). A missing one is a DataError naming it
    (exit 2), or with ``keep_going`` returned per job id: those jobs are INFRA."""
    from replicate.weights_file import backbone_weights_for, segmenter_for, weights_for

    missing: dict[str, str] = {}
    for job in jobs:
        for weights in (weights_for(job.cfg), backbone_weights_for(job.cfg), segmenter_for(job.cfg)):
            if weights is None or weights.path.is_file() or job.job_id in missing:
                continue
            where = f": place the released file from {weights.source} there" if weights.released else ""
            error = DataError(str(weights.path), f"weights file not found{where}")
            if not keep_going:
                raise error
            missing[job.job_id] = str(error)
            echo(f"weights: {error}; job {job.job_id} is INFRA, the others run")
    return missing


def run_one(overrides: Sequence[str], echo: Echo = print) -> SuiteResult:
    """One job (``replicate run``): compose, schedule, judge, store.

    ``replicate run suite_id=X`` files its job under suite X: recorded (and marked finished) when
    the store does not know X yet, so `replicate report --suite-id X` finds it; an existing suite of
    that id (a job re-run inside a nightly suite) is left as it is.
    """
    cfg = compose_config(overrides)
    job = resolve_job(cfg, cfg.suite_id)
    logger = make_logger(cfg, echo)
    with SuiteRun(cfg, cfg.suite_id, echo, logger) as run:
        if cfg.suite_id and not any(s["suite_id"] == cfg.suite_id for s in run.store.suites()):
            run.register("run", overrides)
            run.store.finish_suite(cfg.suite_id)
        result = run.execute([job], skip_finished=False)
    result.logged = logger.where() if logger is not None else None
    return result


def run_suite(overrides: Sequence[str], echo: Echo = print, retry_failed: bool = False) -> SuiteResult:
    """All jobs of a suite via the scheduler; a re-run of the same suite id skips finished jobs
    (INFRA ones always run again; ERROR ones too with ``retry_failed``)."""
    root = compose_config(overrides)
    suite_id, jobs = plan_suite(root, overrides)
    with SuiteRun(root, suite_id, echo, make_logger(root, echo)) as run:
        run.register(root.suite.name, overrides)
        result = run.execute(jobs, skip_finished=True, rerun=(INFRA, ERROR) if retry_failed else (INFRA,),
                             missing_data_is_infra=True)
        run.finish(result)
    return result
