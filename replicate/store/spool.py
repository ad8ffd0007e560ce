"""A durable spool for results the store could not take, written to the store at the next start.

A job that trained for hours must not lose its result because the database was read-only, gone,
full or unreachable at the moment of saving. Its record then goes to ``RESULTS_DIR/spool/`` as one
JSON file (written atomically, beside the checkpoints, on the job's own volume), and every later
``replicate run``/``suite`` first writes the spool to the store and removes each file it wrote.
A record is plain data: a spool file is never executed, only parsed as JSON and re-validated by
the store.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

from replicate.errors import DataError, StoreError
from replicate.jobs import GROUP_IDENTITY
from replicate.json_files import read_json
from replicate.paths import path_component

SPOOL = "spool"
KINDS = ("job", "group")
# A record is a config, metrics and curves: kilobytes. A file far larger was not written here.
MAX_RECORD_BYTES = 64 * 1024**2


def spool_dir(results_dir: str | Path) -> Path:
    return Path(results_dir) / SPOOL


def put(directory: Path, kind: str, record: Mapping[str, Any]) -> Path:
    """Keep ``record`` (a job or group record) until the store can take it; the file's path."""
    if kind not in KINDS:
        raise ValueError(f"spool kind {kind!r} not in {KINDS}")
    key = record.get("job_id") or "-".join(str(record.get(k, "")) for k in ("suite_id", *GROUP_IDENTITY))
    name = f"{kind}-{path_component(str(key)[:180], 'spooled record id')}.json"
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump({"kind": kind, "record": dict(record)}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, directory / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return directory / name


def pending(directory: Path) -> list[Path]:
    """Spooled records, jobs before the group verdicts judged from them."""
    found = directory.glob("*.json") if directory.is_dir() else []
    return sorted(found, key=lambda p: (not p.name.startswith("job-"), p.name))


def drain(directory: Path, store: Any, echo: Callable[[str], None]) -> int:
    """Write every spooled record to ``store``; the number written. Stops at the first store
    failure (the store is still down: the rest stays spooled); an unreadable file is set aside."""
    written = 0
    for path in pending(directory):
        try:
            entry = read_json(path, max_bytes=MAX_RECORD_BYTES)
            kind, record = entry["kind"], entry["record"]
            save = {"job": store.save_job, "group": store.save_group}[kind]
        except (DataError, KeyError, TypeError) as exc:   # never blocks the files after it
            reason = str(exc).removeprefix(f"{path}: ") if isinstance(exc, DataError) else type(exc).__name__
            try:
                os.replace(path, path.with_suffix(".unreadable"))
            except OSError as move:
                echo(f"spool: {path} is not a spooled record ({reason}) and cannot be set aside ({move.strerror})")
                continue
            echo(f"spool: {path} is not a spooled record ({reason}); set aside")
            continue
        try:
            save(record)
        except StoreError:
            raise
        except ValueError as exc:   # the store refuses the record itself: keep it for a person
            os.replace(path, path.with_suffix(".rejected"))
            echo(f"spool: {path} rejected by the store ({exc}); kept as {path.with_suffix('.rejected').name}")
            continue
        path.unlink()
        written += 1
    if written:
        echo(f"spool: {written} result(s) kept while the store was unavailable are now in the store")
    return written
