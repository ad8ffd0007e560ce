"""Fixtures of the logger tests: the reader of wandb's offline run files, TINY for module fixtures."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).resolve().parent


def _load(path: Path, name: str) -> ModuleType:
    """A module from its file (tests are not a package, and run with --import-mode=importlib)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module    # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def wandb_files() -> ModuleType:
    """tests/loggers/wandb_records.py: reads the records wandb wrote offline."""
    return _load(HERE / "wandb_records.py", "wandb_records")


@pytest.fixture(scope="session")
def tiny_overrides() -> list[str]:
    """tests/conftest.py's TINY, for fixtures wider than the function-scoped ``tiny``."""
    return list(_load(HERE.parent / "conftest.py", "tests_root_conftest").TINY)
