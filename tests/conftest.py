"""Shared fixtures: the real config composed and shrunk, a session-wide local Ray, and the
reference data of public projects that some tests cross-check against when it is present."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from benchmarks import local_postgres

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
    before torchvision.ops segfaults (models/zoo_models/darknet/tf_backend.py)."""
    from replicate.tf_import import tensorflow

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


@pytest.fixture(scope="session")
def postgres():
    if not local_postgres.available():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL's initdb/pg_ctl not found: install Debian's postgresql package")
        pytest.skip("PostgreSQL's initdb/pg_ctl not found (Debian package postgresql)")
    # Not under pytest's tmp folder: that one is private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="zoo-postgres-"))
    server = local_postgres.PostgresServer(root)
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
    return postgres.create("t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50])
