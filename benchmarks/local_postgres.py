"""A throwaway PostgreSQL server from Debian's ``postgresql`` package, for the store's tests and
the store benchmark: one data folder, a Unix socket only (no TCP), trust auth, fsync off.

The server refuses to run as root, so under root (CI) it runs as the ``postgres`` user the
package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from pathlib import Path
from typing import Optional


def pg_bin(name: str) -> Optional[str]:
    """The path of a PostgreSQL server program (``initdb``, ``pg_ctl``), or None."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def available() -> bool:
    return pg_bin("initdb") is not None and pg_bin("pg_ctl") is not None


class PostgresServer:
    """``init()``, ``start()``, ``url(database)``, ``create(database)``, ``stop()`` under ``root``."""

    def __init__(self, root: Path, port: int = 54329):
        self.data, self.socket, self.port = root / "data", root / "socket", port
        self.user = None
        if os.geteuid() == 0:
            self.user = pwd.getpwnam("postgres")
            os.chown(root, self.user.pw_uid, self.user.pw_gid)

    def _run(self, *args: str) -> None:
        kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid} if self.user else {}
        subprocess.run(args, check=True, capture_output=True, timeout=120, cwd="/", **kwargs)

    def init(self) -> None:
        self.socket.mkdir(exist_ok=True)
        if self.user:
            os.chown(self.socket, self.user.pw_uid, self.user.pw_gid)
        self._run(str(pg_bin("initdb")), "-D", str(self.data), "-U", "zoo", "--auth=trust", "--no-sync")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def start(self) -> None:
        if self.running():
            return
        self._run(str(pg_bin("pg_ctl")), "-D", str(self.data), "-w", "-l", str(self.data / "server.log"),
                  "-o", f"-p {self.port} -k {self.socket} -c listen_addresses='' -c fsync=off", "start")

    def stop(self) -> None:
        self._run(str(pg_bin("pg_ctl")), "-D", str(self.data), "-w", "-m", "fast", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://zoo@/{database}?host={self.socket}&port={self.port}"

    def create(self, database: str) -> str:
        """A fresh, empty database (dropped first if it exists); its SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(host=str(self.socket), port=self.port, user="zoo", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}"')
            conn.execute(f'CREATE DATABASE "{database}"')
        return self.url(database)
