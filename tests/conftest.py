"""Shared fixtures: the real config composed and shrunk, a session-wide local Ray, and the
reference data of public projects that some tests cross-check against when it is present."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The one home of the reference folder's path: public projects' files (official Darknet cfgs,
# KubeRay CRDs) kept next to the project, never shipped with it. $ZOO_REFERENCE_DIR moves it
# (a nonexistent path shows what a fresh clone without it runs: those tests skip).
REFERENCE_ENV = "ZOO_REFERENCE_DIR"
REFERENCE = Path(os.environ.get(REFERENCE_ENV) or ROOT.parent / "shared" / "reference")


@pytest.fixture(scope="session")
def reference():
    """``reference(sub)``: the folder ``sub`` of the reference data, or a clean skip naming it."""

    def folder(sub: str) -> Path:
        path = REFERENCE / sub
        if not path.is_dir():
            pytest.skip(f"reference data not found at {path} (cross-check against public files; "
                        f"set ${REFERENCE_ENV} to a folder holding {sub}/)")
        return path

    return folder

# Small data and few steps: the real pipeline, shrunk so a job takes seconds.
TINY = [
    "datasets.shapes.num_train=16", "datasets.shapes.num_val=8", "datasets.shapes.image_size=64",
    "model.tiers.smoke.recipe.steps=4", "model.tiers.smoke.recipe.checkpoint_every=2",
    "model.tiers.smoke.recipe.log_every=1", "model.tiers.smoke.input_size=64",
    "logger=none",   # W&B is tested in tests/loggers; other tests do not pay for it
]


@pytest.fixture(autouse=True)
def _no_wandb_online(monkeypatch):
    """Tests never log online by accident: W&B's auto mode goes online when a key is set."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


@pytest.fixture(scope="session")
def tf():
    """TensorFlow, imported when a test first needs it, never at collection (that would import it
    for every collected module), and through the helper that loads triton first: importing TF
    before torchvision.ops segfaults (models/darknet/tf_backend.py)."""
    from models.darknet.tf_backend import tensorflow

    return tensorflow()


@pytest.fixture
def tiny() -> list[str]:
    """Overrides that shrink a smoke job to seconds."""
    return list(TINY)


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    return tmp_path / "results"


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole test session (starting Ray costs seconds)."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory) -> Path:
    """The synthetic dataset generated once per session (the TINY size)."""
    return tmp_path_factory.mktemp("shapes") / "shapes"


# A real PostgreSQL server for the store's tests, started from Debian's ``postgresql`` package:
# one per test session in a temporary folder, listening only on a Unix socket. The server refuses
# to run as root, so under root (CI) it runs as the ``postgres`` user the package creates. Without
# the package the tests skip, except under CI=true, where they fail: the store must be tested on
# the database the cluster uses.


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


class PostgresServer:
    def __init__(self, root: Path):
        self.data, self.socket, self.port = root / "data", root / "socket", 54329
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
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-U", "zoo", "--auth=trust", "--no-sync")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def start(self) -> None:
        if self.running():
            return
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.data / "server.log"),
                  "-o", f"-p {self.port} -k {self.socket} -c listen_addresses='' -c fsync=off", "start")

    def stop(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-w", "-m", "fast", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://zoo@/{database}?host={self.socket}&port={self.port}"


@pytest.fixture(scope="session")
def postgres():
    if _pg_bin("initdb") is None or _pg_bin("pg_ctl") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL's initdb/pg_ctl not found: install Debian's postgresql package")
        pytest.skip("PostgreSQL's initdb/pg_ctl not found (Debian package postgresql)")
    # Not under pytest's tmp folder: that one is private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="zoo-postgres-"))
    server = PostgresServer(root)
    try:
        server.init()
        server.start()
        yield server
        server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(postgres, request) -> str:
    """A fresh database on the session's server for one test."""
    import psycopg

    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    with psycopg.connect(host=str(postgres.socket), port=postgres.port, user="zoo", dbname="postgres",
                         autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres.url(name)
