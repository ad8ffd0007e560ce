"""The results store: suites, jobs and group verdicts behind a small, dict-in/dict-out API.

Any SQLAlchemy URL works (a SQLite file by default, PostgreSQL on the cluster). Opening a store
upgrades its schema to the latest Alembic revision, so an old results file keeps working.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Optional

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine, create_engine, delete, func, make_url, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from replicate.errors import ConfigError, StoreError
from replicate.jobs import GROUP_IDENTITY, INFRA, OUTCOMES
from replicate.redact import redact_text
from replicate.store.tables import (
    GROUP_KEY,
    JOB_DEFAULTS,
    Base,
    GroupVerdict,
    Job,
    ReferenceRun,
    SelftestRow,
    Suite,
    as_utc,
    check_json,
    coerce_values,
    row_to_dict,
    utcnow,
)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
URL_KEY = "store.url"

JOB_REQUIRED = ("job_id", *GROUP_IDENTITY, "seed", "verdict")
GROUP_REQUIRED = (*GROUP_KEY, "verdict")
SELFTEST_REQUIRED = ("role", "model", "framework")
SELFTEST_KEY = ("role", "defect", "model", "framework")   # one row per defect (or control) and implementation
# Kept as stored: created_at marks the first run; ``id`` is internal (groups are found by key).
GROUP_IGNORED = ("id", "created_at")


# Errors -------------------------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    """The driver's own first line (SQLAlchemy appends the statement and a help link)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0][:300]


def _database_errors(method: Callable) -> Callable:
    """Every database failure of a store method as one StoreError naming the store (exit 2)."""

    @functools.wraps(method)
    def guarded(self: "ResultStore", *args: Any, **kwargs: Any) -> Any:
        self.check_present()
        try:
            return method(self, *args, **kwargs)
        except SQLAlchemyError as exc:
            raise StoreError(f"store {self._safe_url}: {_reason(exc)}") from None

    return guarded


class ResultStore:
    """Read and write zoo-replicate results in a SQL database.

    Args:
        url: SQLAlchemy database URL, e.g. ``sqlite:///results/zoo.db`` or
            ``postgresql+psycopg://user:pass@host/zoo``. A SQLite file's folder is created.
        **ignored: Extra keys of the Hydra ``store`` config; accepted and ignored.

    Raises:
        ConfigError: ``store.url`` is unparseable, names an unknown dialect or driver, cannot be
            opened, or holds a schema revision this version does not know.
    """

    def __init__(self, url: str, **ignored: Any):
        self.url = str(url)
        parsed = _parse_url(self.url)
        # SQLAlchemy hides the userinfo password only; a ?password= parameter needs the redaction rule.
        self._safe_url = redact_text(parsed.render_as_string(hide_password=True))
        self._engine = _create_engine(parsed)
        self._sqlite_path = _sqlite_file(parsed)
        try:
            _upgrade_to_head(self._engine)
        except (SQLAlchemyError, CommandError) as exc:   # corrupt file, a folder, unreachable server
            self._engine.dispose()
            raise ConfigError(URL_KEY, f"cannot open store {self._safe_url}: {_reason(exc)}") from None
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"ResultStore({self._safe_url!r})"

    def check_present(self) -> None:
        """A SQLite file deleted or moved while open still takes writes, into an unlinked file
        that nobody can read: refuse them instead (StoreError), so the result is spooled."""
        if self._sqlite_path is not None and not self._sqlite_path.is_file():
            raise StoreError(f"store {self._safe_url}: the database file is gone (deleted or moved while open)")

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    # Suites ---------------------------------------------------------------------------------

    @_database_errors
    def upsert_suite(self, suite_id: str, name: str, config: dict) -> None:
        """Record that a suite started; a re-run of the same suite clears its ``finished_at``."""
        config = check_json(config, "config")
        with self._sessions.begin() as session:
            suite = session.get(Suite, suite_id)
            if suite is None:
                session.add(Suite(suite_id=suite_id, name=name, config=config))
                return
            suite.name, suite.config, suite.finished_at = name, config, None

    @_database_errors
    def finish_suite(self, suite_id: str) -> None:
        """Stamp ``finished_at`` on a suite.

        Raises:
            ValueError: the suite was never recorded with :meth:`upsert_suite`.
        """
        with self._sessions.begin() as session:
            suite = session.get(Suite, suite_id)
            if suite is None:
                raise ValueError(f"unknown suite {suite_id!r}")
            suite.finished_at = utcnow()

    @_database_errors
    def suites(self, limit: Optional[int] = None) -> list[dict]:
        """All suites, newest first (``created_at``, then ``suite_id``, both descending)."""
        query = select(Suite).order_by(Suite.created_at.desc(), Suite.suite_id.desc()).limit(limit)
        with self._sessions() as session:
            return [row_to_dict(row) for row in session.scalars(query)]

    # Jobs -----------------------------------------------------------------------------------

    @_database_errors
    def finished_job_ids(self, suite_id: str, rerun: Iterable[str] = (INFRA,)) -> set[str]:
        """Ids of the suite's jobs that need no re-run: all with a row except those whose verdict
        is in ``rerun`` (INFRA by default: the cluster failed them, not the model)."""
        query = select(Job.job_id).where(Job.suite_id == suite_id, Job.verdict.not_in(list(rerun)))
        with self._sessions() as session:
            return set(session.scalars(query))

    @_database_errors
    def get_job(self, job_id: str) -> Optional[dict]:
        """The job's row as a dict, or None when it was never saved."""
        with self._sessions() as session:
            row = session.get(Job, job_id)
            return None if row is None else row_to_dict(row)

    @_database_errors
    def save_job(self, record: Mapping[str, Any]) -> None:
        """Insert or replace the row of ``record["job_id"]``.

        A re-run replaces every column the record gives and resets the ones it omits to their
        defaults, so no stale failure or metric of an earlier run survives. ``created_at`` keeps
        its first value unless the record gives one; ``updated_at`` is always now.

        Raises:
            ValueError: a key is not a column, a required key is missing, the verdict is not an
                outcome, or a value has the wrong type or is not JSON-able.
        """
        values = _job_values(record)
        created_at = values.pop("created_at", None)
        values.pop("updated_at", None)   # managed here: it says when the row last changed

        def write(session: Session) -> None:
            row = session.get(Job, values["job_id"])
            if row is None:
                row = Job(created_at=created_at or utcnow())
                session.add(row)
            elif created_at is not None:
                row.created_at = created_at
            for key, value in values.items():
                setattr(row, key, value)
            row.updated_at = utcnow()

        self._write_with_retry(write)

    @_database_errors
    def jobs(
        self,
        *,
        model: Optional[str] = None,
        suite_id: Optional[str] = None,
        tier: Optional[str] = None,
        limit: Optional[int] = None,
    ) -> list[dict]:
        """Jobs matching every filter given, newest first (``created_at``, then ``job_id``,
        both descending)."""
        query = select(Job)
        for column, wanted in ((Job.model, model), (Job.suite_id, suite_id), (Job.tier, tier)):
            if wanted is not None:
                query = query.where(column == wanted)
        query = query.order_by(Job.created_at.desc(), Job.job_id.desc()).limit(limit)
        with self._sessions() as session:
            return [row_to_dict(row) for row in session.scalars(query)]

    @_database_errors
    def count_jobs(self, *, model: Optional[str] = None, suite_id: Optional[str] = None) -> int:
        """How many jobs the store holds (of ``model``, of ``suite_id``, where given)."""
        query = select(func.count()).select_from(Job)
        if model is not None:
            query = query.where(Job.model == model)
        if suite_id is not None:
            query = query.where(Job.suite_id == suite_id)
        with self._sessions() as session:
            return int(session.scalar(query) or 0)

    # Group verdicts -------------------------------------------------------------------------

    @_database_errors
    def save_group(self, record: Mapping[str, Any]) -> None:
        """Insert or replace the verdict of one group, found by its key (:data:`GROUP_KEY`).

        Omitted optional columns are reset; ``id`` and ``created_at`` in the record are ignored
        so that a dict read back with :meth:`groups` can be saved again.

        Raises:
            ValueError: as for :meth:`save_job`.
        """
        values = _group_values(record)

        def write(session: Session) -> None:
            key = [getattr(GroupVerdict, name) == values[name] for name in GROUP_KEY]
            row = session.scalars(select(GroupVerdict).where(*key)).one_or_none()
            if row is None:
                row = GroupVerdict()
                session.add(row)
            for name, value in values.items():
                setattr(row, name, value)

        self._write_with_retry(write)

    @_database_errors
    def groups(self, suite_id: str) -> list[dict]:
        """The suite's group verdicts, ordered by model, variant, framework, tier, hardware."""
        order = [getattr(GroupVerdict, name) for name in GROUP_KEY[1:]]
        query = select(GroupVerdict).where(GroupVerdict.suite_id == suite_id).order_by(*order)
        with self._sessions() as session:
            return [row_to_dict(row) for row in session.scalars(query)]

    @_database_errors
    def group_history(self, model: Optional[str] = None) -> list[dict]:
        """Group verdicts of every suite (of ``model`` if given), each with its suite's
        ``suite_created_at``; oldest suite first, so the last match of a key is the latest."""
        query = select(GroupVerdict, Suite.created_at).join(Suite, Suite.suite_id == GroupVerdict.suite_id)
        if model is not None:
            query = query.where(GroupVerdict.model == model)
        query = query.order_by(Suite.created_at, Suite.suite_id, GroupVerdict.model)
        with self._sessions() as session:
            return [{**row_to_dict(group), "suite_created_at": as_utc(created).isoformat()}
                    for group, created in session.execute(query)]

    # Selftest rows ----------------------------------------------------------------------------

    @_database_errors
    def save_selftest(self, suite_id: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """Save selftest rows of ``suite_id`` (one transaction); each replaces the suite's earlier
        row of the same :data:`SELFTEST_KEY` (a re-run of some defects keeps the others' rows).

        Raises:
            ValueError: a row has a key that is not a column, lacks a required one, or has a
                value of the wrong type.
        """
        values = [_selftest_values(suite_id, row) for row in rows]
        with self._sessions.begin() as session:
            for value in values:
                same = [getattr(SelftestRow, k).is_(None) if value[k] is None else getattr(SelftestRow, k) == value[k]
                        for k in SELFTEST_KEY]
                session.execute(delete(SelftestRow).where(SelftestRow.suite_id == suite_id, *same))
            session.add_all(SelftestRow(**v) for v in values)

    @_database_errors
    def selftest_rows(self, suite_id: str) -> list[dict]:
        """The selftest rows of ``suite_id`` in the order they were saved (empty if it has none)."""
        query = select(SelftestRow).where(SelftestRow.suite_id == suite_id).order_by(SelftestRow.id)
        with self._sessions() as session:
            return [row_to_dict(row) for row in session.scalars(query)]

    # Reference runs ---------------------------------------------------------------------------

    @_database_errors
    def add_reference_run(self, record: Mapping[str, Any]) -> int:
        """Save a reference run (status candidate unless given); its id. A job already recorded
        as one is not added twice (its existing id is returned).

        Raises:
            ValueError: a key is not a column, a required one is missing, a value has the wrong
                type, or the status is not one of :data:`REFERENCE_STATUSES`.
        """
        values = _reference_values(record)
        with self._sessions.begin() as session:
            if values.get("job_id"):
                known = session.scalars(select(ReferenceRun.id).where(ReferenceRun.job_id == values["job_id"])).first()
                if known is not None:
                    return int(known)
            row = ReferenceRun(**values)
            session.add(row)
            session.flush()
            return int(row.id)

    @_database_errors
    def reference_runs(self, *, model: Optional[str] = None, status: Optional[str] = None) -> list[dict]:
        """Reference runs, oldest first, filtered by model and status."""
        query = select(ReferenceRun).order_by(ReferenceRun.id)
        if model is not None:
            query = query.where(ReferenceRun.model == model)
        if status is not None:
            query = query.where(ReferenceRun.status == status)
        with self._sessions() as session:
            return [row_to_dict(row) for row in session.scalars(query)]

    @_database_errors
    def set_reference_status(self, run_id: int, status: str) -> Optional[dict]:
        """Set a reference run's status; its row after the change, or None when there is no such run."""
        if status not in REFERENCE_STATUSES:
            raise ValueError(f"status {status!r} is not one of {', '.join(REFERENCE_STATUSES)}")
        with self._sessions.begin() as session:
            row = session.get(ReferenceRun, int(run_id))
            if row is None:
                return None
            row.status, row.updated_at = status, utcnow()
            session.flush()
            return row_to_dict(row)

    def _write_with_retry(self, write) -> None:
        """Run ``write`` in a transaction; retry once if a concurrent writer inserted the row
        between our read and our insert (the retry then finds and updates it)."""
        try:
            with self._sessions.begin() as session:
                write(session)
        except IntegrityError:
            with self._sessions.begin() as session:
                write(session)


# Opening ------------------------------------------------------------------------------------


def open_existing(node: Any) -> ResultStore:
    """The store a read-only command (``history``, ``report``, ``cost``) reads, built from the
    Hydra ``store`` node, without creating anything.

    Building a :class:`ResultStore` creates a missing SQLite file (what a writer wants), so a
    mistyped ``results_dir`` would leave an empty ``zoo.db`` behind and report "no suite".

    Raises:
        ConfigError: ``store.url`` is unparseable, or names a SQLite file that does not exist
            ("no store at <path>"; exit 2).
    """
    from replicate.config.infra import build

    url = _parse_url(str(node.url))
    path = _sqlite_file(url)
    if path is not None and not path.is_file():
        raise ConfigError(URL_KEY, f"no store at {path} (nothing recorded there yet: check results_dir= or "
                                   f"store.url=, or run `replicate run` / `replicate suite` first)")
    return build(node, "store")


def _sqlite_file(url: URL) -> Optional[Path]:
    """The file a SQLite URL names; None for other databases and in-memory or ``file:`` URIs."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def _parse_url(url: str) -> URL:
    """Parse ``url``, turning SQLAlchemy's errors into a ConfigError naming ``store.url``."""
    # An unencoded "@" in the password makes the parser split there: part of the password would
    # become the host and be printed. The URL is never echoed with its password.
    if "@" in url.split("://", 1)[-1].split("@", 1)[-1].split("/", 1)[0]:
        raise ConfigError(URL_KEY, "the user or password contains '@': percent-encode it as %40")
    try:
        return make_url(url)
    except (ArgumentError, ValueError, TypeError) as exc:
        raise ConfigError(URL_KEY, f"not a database URL: {redact_text(repr(url))} "
                                   f"({type(exc).__name__})") from None


def _create_engine(url: URL) -> Engine:
    """Build the engine; for SQLite, create the file's folder and share in-memory databases."""
    # pre_ping: a pooled connection the server dropped (a restart, a failover, an idle timeout
    # mid-suite) is replaced before use instead of failing the next save.
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:"):
            # Each new connection to :memory: would see a fresh, empty database.
            kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
        elif not database.startswith("file:"):
            # Only the last folder (results_dir, whose parent the config check found): a store
            # URL naming a folder that is not there is refused, never created with its parents.
            try:
                Path(database).expanduser().parent.mkdir(exist_ok=True)
            except FileNotFoundError:
                raise ConfigError(URL_KEY, f"the folder of {database} does not exist") from None
            except OSError as exc:
                raise ConfigError(URL_KEY, f"cannot create the folder of {database}: {exc.strerror}") from None
    try:
        return create_engine(url, **kwargs)
    except (ArgumentError, ImportError) as exc:   # unknown dialect, driver not installed
        safe = redact_text(url.render_as_string(hide_password=True))
        raise ConfigError(URL_KEY, f"unsupported database URL {safe!r}: {exc}") from exc


def _alembic_config() -> Config:
    """An Alembic config pointing at the packaged migrations; no alembic.ini involved."""
    config = Config()
    # ConfigParser interpolates '%'; escape it so any install path works.
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    return config


def _upgrade_to_head(engine: Engine) -> None:
    """Run ``alembic upgrade head`` on ``engine``, skipping it when already at head."""
    config = _alembic_config()
    head = ScriptDirectory.from_config(config).get_current_head()
    with engine.begin() as connection:
        if MigrationContext.configure(connection).get_current_revision() == head:
            return
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


# Validation ---------------------------------------------------------------------------------


def _job_values(record: Mapping[str, Any]) -> dict[str, Any]:
    """Validated column values of a job record, defaults filled in for omitted columns."""
    _check_keys(record, Job, JOB_REQUIRED, "job")
    values = {name: factory() for name, factory in JOB_DEFAULTS.items()}
    nullable = {c.name for c in Job.__table__.columns if c.nullable}
    values.update(dict.fromkeys(nullable - set(JOB_DEFAULTS), None))
    values.update(coerce_values(record, Job))
    _check_verdict(values["verdict"])
    return values


def _group_values(record: Mapping[str, Any]) -> dict[str, Any]:
    """Validated column values of a group record; omitted optional columns reset."""
    _check_keys(record, GroupVerdict, GROUP_REQUIRED, "group")
    record = {k: v for k, v in record.items() if k not in GROUP_IGNORED}
    settable = {c.name for c in GroupVerdict.__table__.columns} - set(GROUP_IGNORED)
    values: dict[str, Any] = dict.fromkeys(settable, None)
    values["seeds"] = []
    values.update(coerce_values(record, GroupVerdict))
    _check_verdict(values["verdict"])
    return values


def _selftest_values(suite_id: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """Validated column values of one selftest row of ``suite_id``."""
    row = {k: v for k, v in row.items() if k not in ("id", "created_at")}
    _check_keys(row, SelftestRow, SELFTEST_REQUIRED, "selftest")
    values = coerce_values({**row, "suite_id": suite_id}, SelftestRow)
    values["flagged"] = bool(values.get("flagged"))
    values["preflight"] = values.get("preflight") or {}
    values.setdefault("defect", None)
    return values


# What a reference run can be: found and waiting (candidate), in use (promoted), or set aside (retired).
REFERENCE_STATUSES = ("candidate", "promoted", "retired")
REFERENCE_REQUIRED = ("model", "variant", "framework", "tier", "hardware", "recipe", "metric_name", "direction",
                      "fraction", "source")


def _reference_values(record: Mapping[str, Any]) -> dict[str, Any]:
    """Validated column values of one reference run."""
    row = {k: v for k, v in record.items() if k not in ("id", "created_at", "updated_at")}
    row.setdefault("status", "candidate")
    _check_keys(row, ReferenceRun, REFERENCE_REQUIRED, "reference run")
    if row["status"] not in REFERENCE_STATUSES:
        raise ValueError(f"status {row['status']!r} is not one of {', '.join(REFERENCE_STATUSES)}")
    return coerce_values(row, ReferenceRun)


def _check_keys(record: Mapping[str, Any], model: type[Base], required: Iterable[str], what: str):
    """Reject keys that are not columns and required keys that are missing or None."""
    if not isinstance(record, Mapping):
        raise ValueError(f"a {what} record must be a mapping, got {type(record).__name__}")
    columns = {c.name for c in model.__table__.columns}
    unknown = sorted(set(record) - columns)
    if unknown:
        raise ValueError(f"unknown {what} field(s) {unknown}; columns are {sorted(columns)}")
    missing = [key for key in required if record.get(key) is None]
    if missing:
        raise ValueError(f"{what} record lacks required field(s) {missing}")


def _check_verdict(verdict: str) -> None:
    if verdict not in OUTCOMES:
        raise ValueError(f"verdict {verdict!r} not in {OUTCOMES}")
