"""W&B logger: one W&B run per job, and a leaderboard table plus the HTML report per suite.

Everything is logged from the driver (the process running the suite), after the job's row is in
the store, from the record the store holds. Ray workers and the ranks of multi-worker training
never import wandb, so logging is rank-0 only by construction and a job is logged exactly once.

W&B is a view, not the system of record: if it is unreachable or fails, one line says so, W&B
is skipped for the rest of the suite and the suite goes on; the store has everything. The API
key comes only from the ``WANDB_API_KEY`` environment variable (read by wandb itself) and is
never logged: secret-looking config keys are dropped and the key's value is redacted.
"""

from __future__ import annotations

import math
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from replicate.defects import defect_of
from replicate.errors import ConfigError
from replicate.jobs import MEASURED, PASS, verdict_counts
from replicate.redact import REDACTED, SECRET_KEY, URL_PASSWORD, scrub  # noqa: F401 - re-exported
from replicate.verdict import target_label

MODES = ("auto", "online", "offline", "disabled")
TABLE_KEY = "leaderboard"


def run_name(record: dict[str, Any]) -> str:
    """model-variant-seed, plus the framework when it is not the default torch and the defect
    injected into the job, if any (it is no real result)."""
    name = f"{record['model']}-{record['variant']}-s{record['seed']}"
    name = name if record["framework"] == "torch" else f"{name}-{record['framework']}"
    defect = defect_of(record)
    return name if defect is None else f"{name}-defect-{defect}"


def defect_tags(record: dict[str, Any]) -> list[str]:
    """``["defect:NAME"]`` for a job with an injected defect, so W&B can filter them out."""
    defect = defect_of(record)
    return [] if defect is None else [f"defect:{defect}"]


def curve_steps(curve: list[dict[str, Any]]) -> list[tuple[int, dict[str, float]]]:
    """The learning curve as (step, numeric values) with points of the same step merged, in step
    order: W&B drops a step lower than one already logged (after a restart, say)."""
    merged: dict[int, dict[str, float]] = {}
    for point in curve:
        values = {k: float(v) for k, v in point.items()
                  if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
        merged.setdefault(int(point.get("step", 0)), {}).update(values)
    return sorted(merged.items())


def job_summary(record: dict[str, Any]) -> dict[str, Any]:
    """A job's W&B summary: final metrics, what it was compared with (``target``: a claim, or a
    reference of this implementation, named by ``target.label``), the delta to it, verdict,
    failure class, times, accelerator-hours, cost and the environment fingerprint, all as the
    store holds them."""
    target = record.get("compared_with") or {}
    value, reference = record.get("metric_value"), target.get("value")
    delta = None if value is None or reference is None else value - reference
    return {
        **(record.get("metrics") or {}),
        "job_id": record["job_id"], "suite_id": record.get("suite_id"), "seed": record["seed"],
        "metric_name": record.get("metric_name"), "metric_value": value,
        "target": {"label": target_label(target.get("kind")),
                   **{k: target.get(k) for k in ("kind", "metric", "value", "source", "split", "low", "high",
                                                 "direction")}},
        "delta_to_target": delta, "delta_pct": None if delta is None or not reference else 100.0 * delta / reference,
        "verdict": record["verdict"], "failure_stage": record.get("failure_stage"),
        "failure_impact": record.get("failure_impact"), "failure_message": record.get("failure_message"),
        "times": {k: record.get(k) for k in ("setup_s", "train_s", "eval_s", "lost_s", "retry_overhead_s", "wall_s",
                                             "queue_s", "time_to_quality_s")},
        "attempts": len(record.get("attempts") or []),
        "accelerator_hours": record.get("accelerator_hours"), "cost": record.get("cost"),
        "throughput": record.get("throughput"), "restarts": record.get("restarts"),
        "steps_done": record.get("steps_done"), "early_check": record.get("early_check") or {},
        "environment": record.get("environment") or {}, "config_hash": record.get("config_hash"),
    }


def table_cell(value: Any) -> Any:
    """A leaderboard value as a W&B table cell: lists become '0,1,2' (sentences: 'a; b'); NaN
    becomes None."""
    if isinstance(value, (list, tuple)):
        return ("; " if any(isinstance(v, str) for v in value) else ",").join(str(v) for v in value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def table_columns() -> list[str]:
    """The leaderboard table's columns: every leaderboard key (the store's values), then two
    read-only summaries for sponsors: what the row is compared with (labelled claim or reference,
    with its source) and the measured mean +- spread, and the suite: each night's table is logged
    under the same key, so W&B joins the nights' tables into one (rows told apart by suite)."""
    from replicate.leaderboard import LEADERBOARD_KEYS

    return [*LEADERBOARD_KEYS, "compared with", "measured", "suite_id"]


def table_row(row: dict[str, Any], suite_id: Optional[str] = None) -> list[Any]:
    """One leaderboard row of suite ``suite_id`` as table cells, in :func:`table_columns` order."""
    from replicate.leaderboard import LEADERBOARD_KEYS

    compared = row["target_label"]
    if row["target_value"] is not None:
        compared += f": {row['target_value']:.4g} ({row['target_source']})"
    measured = "-" if row["mean"] is None else f"{row['mean']:.4g}"
    if row["mean"] is not None and row["std"] is not None:
        measured += f" ± {row['std']:.2g}"
    return [*(table_cell(row[k]) for k in LEADERBOARD_KEYS), compared, measured, suite_id]


def suite_summary(suite_id: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The leaderboard run's summary: the suite, its model groups and their verdict counts, those
    against the paper apart from the canary, and the cost with its currency and per PASS.
    MEASURED (nothing to compare with) is counted apart from the passes: it is never one."""
    from replicate.leaderboard import PAPER

    counts = verdict_counts(rows)
    paper = [r for r in rows if r.get("section") == PAPER]
    paper_passes = sum(r["verdict"] == PASS for r in paper)
    cost = sum(float(r.get("cost") or 0.0) for r in rows)
    currencies = {r.get("currency") for r in rows}
    return {"suite_id": suite_id, "models": len(rows), "passes": counts.get(PASS, 0),
            "measured": counts.get(MEASURED, 0), "verdicts": counts,
            # the two questions apart: did it reproduce the paper, and is the canary green
            "paper_groups": len(paper), "paper_passes": paper_passes,
            "canary_groups": len(rows) - len(paper), "canary_passes": counts.get(PASS, 0) - paper_passes,
            "cost": cost, "cost_per_pass": cost / counts[PASS] if counts.get(PASS) else None,
            "currency": currencies.pop() if len(currencies) == 1 else None}


class WandbLogger:
    """Logs jobs and suites to W&B.

    Args:
        project: W&B project.
        entity: W&B entity (team or user); None: the API key's default entity.
        mode: ``auto`` (online when ``WANDB_API_KEY`` is set, offline otherwise), ``online``,
            ``offline`` (files under ``dir/wandb``, upload later with ``wandb sync``) or
            ``disabled``.
        dir: Folder under which wandb creates its ``wandb/`` folder of run files.
        base_url: W&B server; None: wandb's default.
        init_timeout_s: Seconds to wait for a run to start (online: the server's answer).
        finish_timeout_s: Seconds a run may take to finish uploading (online); past it the run is
            marked crashed and W&B is skipped for the rest of the suite, which never hangs on W&B.
        **ignored: Other keys of the Hydra ``logger`` config (``name``).

    Raises:
        ConfigError: ``mode`` is not one of :data:`MODES`.
    """

    def __init__(self, project: str = "zoo-replicate", entity: Optional[str] = None, mode: str = "auto",
                 dir: str = "results", base_url: Optional[str] = None, init_timeout_s: float = 60.0,
                 finish_timeout_s: float = 300.0, **ignored: Any):
        if mode not in MODES:
            raise ConfigError("logger.mode", f"{mode!r} is not one of {', '.join(MODES)}")
        self.project, self.entity, self.base_url = project, entity, base_url
        self.dir = Path(dir)
        self.init_timeout_s, self.finish_timeout_s = float(init_timeout_s), float(finish_timeout_s)
        self.mode = ("online" if os.environ.get("WANDB_API_KEY") else "offline") if mode == "auto" else mode
        self.echo: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)
        self.failure: Optional[str] = None     # set on the first failure: W&B is skipped from then on
        self.runs = 0                         # runs finished, job and suite runs alike
        self._lock = threading.Lock()          # schedulers may report results from several threads

    @property
    def active(self) -> bool:
        return self.mode != "disabled" and self.failure is None

    def where(self) -> str:
        """One line saying where this logger's output went."""
        if self.mode == "disabled":
            return "W&B: disabled (logger.mode=disabled)"
        if self.failure:
            return f"W&B: skipped after a failure ({self.failure}); the store has every result"
        if self.mode == "offline":
            return (f"W&B: {self.runs} offline run(s) under {self.dir / 'wandb'} "
                    f"(upload with: wandb sync {self.dir / 'wandb'}/offline-run-*)")
        return f"W&B: {self.runs} run(s) logged online to project {self.project}"

    def log_job(self, record: dict[str, Any]) -> None:
        """Log one job (its stored record) as a W&B run; never raises."""
        with self._lock:
            self._guarded(self._job_run, record)

    def log_suite(self, suite_id: str, rows: list[dict[str, Any]], report_dir: Optional[Path],
                  alerts: Sequence[Any] = ()) -> None:
        """Log the suite's leaderboard table (and the report folder as an artifact), and raise each
        alert (``title``, ``text()``) on that run (W&B mails or posts it as the lab set it up);
        never raises."""
        with self._lock:
            self._guarded(self._suite_run, suite_id, rows, report_dir, alerts)

    # Internals ------------------------------------------------------------------------------

    def _guarded(self, log: Callable[..., None], *args: Any) -> None:
        """Run ``log``; on any failure report one line and skip W&B from then on."""
        if not self.active:
            return
        try:
            log(*args)
        except Exception as exc:   # noqa: BLE001 - W&B must never fail a suite, whatever it raises
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            self.failure = scrub(f"{type(exc).__name__}: {first}", self._secrets())
            self.echo(f"W&B {self.mode} logging failed, skipped for the rest of this suite ({self.failure}); "
                      f"the store has every result")

    def _secrets(self) -> list[str]:
        return [os.environ.get("WANDB_API_KEY", "")]

    def _init(self, **kwargs: Any):
        import wandb

        self.dir.mkdir(parents=True, exist_ok=True)
        settings: dict[str, Any] = {"init_timeout": self.init_timeout_s, "finish_timeout": self.finish_timeout_s,
                    "finish_timeout_raises": True, "silent": True, "console": "off",
                    "x_disable_stats": True, "x_disable_meta": True, "x_disable_machine_info": True,
                    "x_save_requirements": False, "disable_git": True, "save_code": False,
                    **({"base_url": self.base_url} if self.base_url else {})}
        mode: Any = self.mode   # checked against wandb's modes when the logger is built
        return wandb.init(project=self.project, entity=self.entity, mode=mode, dir=str(self.dir),
                          reinit="create_new", settings=wandb.Settings(**settings), **kwargs)

    def _finish(self, run: Any, log: Callable[[Any], None]) -> None:
        """Call ``log(run)``, then finish the run (failed if ``log`` raised) and count it."""
        try:
            log(run)
        except BaseException:
            run.finish(exit_code=1)
            raise
        run.finish()
        self.runs += 1

    def _job_run(self, record: dict[str, Any]) -> None:
        secrets = self._secrets()
        run = self._init(group=record.get("suite_id") or None, job_type=record["tier"], name=run_name(record),
                         config=scrub(record.get("config") or {}, secrets),
                         tags=[record["model"], record["verdict"], *defect_tags(record)])

        def log(run: Any) -> None:
            for step, values in curve_steps(record.get("curve") or []):
                run.log(values, step=step)
            run.summary.update(scrub(job_summary(record), secrets))

        self._finish(run, log)

    def _suite_run(self, suite_id: str, rows: list[dict[str, Any]], report_dir: Optional[Path],
                   alerts: Sequence[Any] = ()) -> None:
        import wandb
        from wandb.sdk.wandb_alerts import AlertLevel  # wandb.AlertLevel at run time; typed here

        run = self._init(group=suite_id, job_type="leaderboard", name=f"leaderboard-{suite_id}",
                         config={"suite_id": suite_id})

        def log(run: Any) -> None:
            columns: list[Any] = table_columns()
            table = wandb.Table(columns=columns, data=[table_row(row, suite_id) for row in rows])
            run.log({TABLE_KEY: table})
            run.summary.update(suite_summary(suite_id, rows))
            if report_dir is not None and Path(report_dir).is_dir():
                artifact = wandb.Artifact(re.sub(r"[^\w.-]", "_", f"report-{suite_id}"), type="report")
                # immutable: referenced in place under results/, not copied to a staging folder.
                artifact.add_dir(str(report_dir), policy="immutable")
                run.log_artifact(artifact)
            for alert in alerts:
                run.alert(title=alert.title[:255], text=alert.text(), level=AlertLevel.WARN)

        self._finish(run, log)
