"""ORM models of the results store (suites, jobs, multi-seed group verdicts) and the
conversion between plain records and rows.

The migrations in ``migrations/versions`` create exactly these tables; a test compares the two
with Alembic's autogenerate so that they cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from replicate.jobs import GROUP_IDENTITY

# Deterministic constraint names: batch migrations on SQLite and drops on PostgreSQL need them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID = 128          # job ids, suite ids, registry names
SHORT = 64        # verdicts, failure classes, metric names


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC (naive local times make history ambiguous)."""
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    """Declarative base carrying the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Suite(Base):
    """One run of a suite (e.g. the nightly smoke suite of one date)."""

    __tablename__ = "suites"

    suite_id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    name: Mapped[str] = mapped_column(String(ID))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


# Factories for the job columns a record may omit; nullable columns not listed default to None.
# Being factories (not values), the mutable defaults are never shared between rows.
JOB_DEFAULTS: dict[str, Callable[[], Any]] = {
    "metrics": dict,
    "curve": list,
    "setup_s": float,
    "train_s": float,
    "eval_s": float,
    "lost_s": float,
    "wall_s": float,
    "accelerator_hours": float,
    "cost": float,
    "steps_done": int,
    "steps_planned": int,
    "restarts": int,
    "early_check": dict,
    "lr_scaling": dict,
    "environment": dict,
    "config": dict,
    "config_hash": str,
}


class Job(Base):
    """One job (model x variant x framework x tier x hardware x seed); re-runs update the row."""

    __tablename__ = "jobs"

    job_id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    suite_id: Mapped[Optional[str]] = mapped_column(String(ID), index=True)
    model: Mapped[str] = mapped_column(String(ID), index=True)
    variant: Mapped[str] = mapped_column(String(ID))
    framework: Mapped[str] = mapped_column(String(SHORT))
    tier: Mapped[str] = mapped_column(String(SHORT))
    hardware: Mapped[str] = mapped_column(String(ID))
    seed: Mapped[int] = mapped_column(Integer)
    verdict: Mapped[str] = mapped_column(String(SHORT))
    failure_stage: Mapped[Optional[str]] = mapped_column(String(SHORT))
    failure_impact: Mapped[Optional[str]] = mapped_column(String(SHORT))
    failure_message: Mapped[Optional[str]] = mapped_column(Text)
    metric_name: Mapped[Optional[str]] = mapped_column(String(ID))
    metric_value: Mapped[Optional[float]] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # none_as_null: store SQL NULL, not JSON 'null', so 'IS NULL' finds jobs compared with nothing.
    compared_with: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON(none_as_null=True))
    curve: Mapped[list[Any]] = mapped_column(JSON, default=list)
    setup_s: Mapped[float] = mapped_column(Float, default=0.0)
    train_s: Mapped[float] = mapped_column(Float, default=0.0)
    eval_s: Mapped[float] = mapped_column(Float, default=0.0)
    lost_s: Mapped[float] = mapped_column(Float, default=0.0)
    # None for jobs stored before migration 0003 (their queue time was not measured)
    queue_s: Mapped[Optional[float]] = mapped_column(Float)
    # None for jobs stored before migration 0004 (their dead attempts were not billed apart)
    retry_overhead_s: Mapped[Optional[float]] = mapped_column(Float)
    wall_s: Mapped[float] = mapped_column(Float, default=0.0)
    accelerator_hours: Mapped[float] = mapped_column(Float, default=0.0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    throughput: Mapped[Optional[float]] = mapped_column(Float)
    time_to_quality_s: Mapped[Optional[float]] = mapped_column(Float)
    steps_done: Mapped[int] = mapped_column(Integer, default=0)
    steps_planned: Mapped[int] = mapped_column(Integer, default=0)
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    # every attempt (replicate/runner/attempts.py); None for jobs stored before migration 0004
    attempts: Mapped[Optional[list[Any]]] = mapped_column(JSON(none_as_null=True))
    early_check: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    lr_scaling: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    environment: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    config_hash: Mapped[str] = mapped_column(String(ID), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# The columns that identify a group; a suite holds at most one verdict per group.
GROUP_KEY = ("suite_id", *GROUP_IDENTITY)


class GroupVerdict(Base):
    """Multi-seed aggregate of one model x variant x framework x tier x hardware in a suite."""

    __tablename__ = "group_verdicts"
    __table_args__ = (UniqueConstraint(*GROUP_KEY, name="uq_group_verdicts_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    suite_id: Mapped[str] = mapped_column(String(ID))
    model: Mapped[str] = mapped_column(String(ID))
    variant: Mapped[str] = mapped_column(String(ID))
    framework: Mapped[str] = mapped_column(String(SHORT))
    tier: Mapped[str] = mapped_column(String(SHORT))
    hardware: Mapped[str] = mapped_column(String(ID))
    seeds: Mapped[list[int]] = mapped_column(JSON, default=list)
    metric_name: Mapped[Optional[str]] = mapped_column(String(ID))
    mean: Mapped[Optional[float]] = mapped_column(Float)
    std: Mapped[Optional[float]] = mapped_column(Float)
    verdict: Mapped[str] = mapped_column(String(SHORT))
    failure_stage: Mapped[Optional[str]] = mapped_column(String(SHORT))
    failure_impact: Mapped[Optional[str]] = mapped_column(String(SHORT))
    message: Mapped[Optional[str]] = mapped_column(Text)
    compared_with: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON(none_as_null=True))
    # Set when the tolerance is tighter than the measured seed noise (docs/architecture.md, "Verdicts").
    noise_note: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SelftestRow(Base):
    """One row of a selftest (replicate/selftest.py): an injected defect, or a clean control, and
    whether and where the benchmark flagged it. A selftest's rows replace its earlier ones."""

    __tablename__ = "selftest_rows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    suite_id: Mapped[str] = mapped_column(String(ID), index=True)
    role: Mapped[str] = mapped_column(String(SHORT))           # defect | control
    defect: Mapped[Optional[str]] = mapped_column(String(ID))   # None for a control
    model: Mapped[str] = mapped_column(String(ID))
    framework: Mapped[str] = mapped_column(String(SHORT))
    stage: Mapped[Optional[str]] = mapped_column(String(SHORT))
    defect_type: Mapped[Optional[str]] = mapped_column(String(ID))
    description: Mapped[Optional[str]] = mapped_column(Text)
    job_id: Mapped[Optional[str]] = mapped_column(String(ID))   # None when the pre-flight caught it
    verdict: Mapped[Optional[str]] = mapped_column(String(SHORT))
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    caught_at: Mapped[Optional[str]] = mapped_column(String(SHORT))
    cost_share: Mapped[Optional[float]] = mapped_column(Float)
    preflight: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)   # ok, failed checks, seconds
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReferenceRun(Base):
    """A run the lab's reference curve is made of: a full-tier job that passed its claims (a
    candidate until promoted), or a curve transcribed from a published training log (imported).
    Promoted runs of one (model, variant, framework, hardware, recipe) set the 25% check of that
    recipe's later jobs (replicate/reference_runs.py)."""

    __tablename__ = "reference_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(SHORT), index=True)   # candidate | promoted | retired
    model: Mapped[str] = mapped_column(String(ID), index=True)
    variant: Mapped[str] = mapped_column(String(ID))
    framework: Mapped[str] = mapped_column(String(SHORT))
    tier: Mapped[str] = mapped_column(String(SHORT))
    hardware: Mapped[str] = mapped_column(String(ID))
    recipe: Mapped[str] = mapped_column(String(ID))   # scheduling.deadlines.recipe_fingerprint of the job's config
    job_id: Mapped[Optional[str]] = mapped_column(String(ID))   # None for an imported curve
    metric_name: Mapped[str] = mapped_column(String(ID))
    direction: Mapped[str] = mapped_column(String(SHORT))
    fraction: Mapped[float] = mapped_column(Float)               # where the early point was measured
    early_metric: Mapped[Optional[float]] = mapped_column(Float)
    early_loss: Mapped[Optional[float]] = mapped_column(Float)
    early_drift: Mapped[Optional[float]] = mapped_column(Float)
    final_metric: Mapped[Optional[float]] = mapped_column(Float)
    final_loss: Mapped[Optional[float]] = mapped_column(Float)
    source: Mapped[str] = mapped_column(Text)                    # the job and suite, or the published log
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# Records <-> rows ---------------------------------------------------------------------------


def coerce_values(record: Mapping[str, Any], model: type[Base]) -> dict[str, Any]:
    """Convert each value to its column's type (numpy scalars -> float/int, ISO strings ->
    datetimes) and check JSON columns serialize, so a bad value names its key here rather
    than failing deep inside the database driver."""
    table = model.__table__
    out: dict[str, Any] = {}
    for key, value in record.items():
        column_type = table.columns[key].type
        if value is None:
            out[key] = None
        elif isinstance(column_type, (Float, Integer)):
            out[key] = _number(value, float if isinstance(column_type, Float) else int, key)
        elif isinstance(column_type, String):  # Text is a String
            if not isinstance(value, str):
                raise ValueError(f"{key} must be a string, got {type(value).__name__}")
            out[key] = value
        elif isinstance(column_type, DateTime):
            out[key] = _datetime(value, key)
        else:
            out[key] = check_json(value, key)
    return out


def _number(value: Any, kind: type, key: str) -> Any:
    """``value`` as ``kind`` (float or int); ValueError naming ``key`` otherwise."""
    try:
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{key} must be a {kind.__name__}, got {value!r}") from exc


def _datetime(value: Any, key: str) -> datetime:
    """A UTC datetime from a datetime or ISO string; naive values are taken as UTC."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"{key} is not an ISO datetime: {value!r}") from exc
    if not isinstance(value, datetime):
        raise ValueError(f"{key} must be a datetime or ISO string, got {type(value).__name__}")
    return as_utc(value)


def check_json(value: Any, key: str) -> Any:
    """``value`` after checking that it serializes (tuples come back as lists)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{key} is not JSON-serializable: {exc}") from exc
    return value


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC, timezone-aware."""
    # SQLite drops the offset on storage; every stored time is UTC, so naive means UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def row_to_dict(row: Base) -> dict[str, Any]:
    """A row as plain data; datetimes become ISO strings in UTC."""
    out = {}
    for column in row.__table__.columns:
        value = getattr(row, column.name)
        out[column.name] = as_utc(value).isoformat() if isinstance(value, datetime) else value
    return out
