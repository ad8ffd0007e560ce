"""The ``conf/`` tree: where it is and which options each config group offers."""

from __future__ import annotations

import os
from pathlib import Path

from replicate.errors import ConfigError

GROUPS = ("model", "tier", "hardware", "suite", "scheduler", "store", "logger", "data")


def conf_dir() -> Path:
    """The ``conf/`` folder: $ZOO_CONF_DIR, else the one beside the installed package."""
    env = os.environ.get("ZOO_CONF_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "conf"
    if not (path / "config.yaml").is_file():
        raise ConfigError("ZOO_CONF_DIR", f"no config.yaml in {path}")
    return path


def group_options(group: str) -> list[str]:
    """Names of the files of one config group, e.g. the models of ``conf/model``."""
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))
