"""The ``conf/`` tree: where it is and which options each config group offers.

The harness's ``conf/`` holds the lab's groups (tiers, hardware, suites, schedulers, stores,
loggers, datasets); each installed zoo adds its folder to the search path, so ``model=NAME``
finds a model in whichever zoo ships ``model/NAME.yaml`` (replicate/zoo/installed.py).
"""

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


def search_dirs() -> list[Path]:
    """``conf/`` first, then each installed zoo's config folder: the order Hydra searches."""
    from replicate.zoo.installed import model_config_dirs

    return [conf_dir(), *model_config_dirs()]


def group_options(group: str) -> list[str]:
    """Names of the files of one config group across the search path, e.g. every zoo's models.

    Raises:
        ConfigError: two folders of the search path offer the same option (two zoos shipping a
            model of one name): which one a job gets must never depend on the search order.
    """
    seen: dict[str, Path] = {}
    for folder in search_dirs():
        for path in sorted((folder / group).glob("*.yaml")):
            if path.stem in seen:
                raise ConfigError(f"{group}={path.stem}", f"offered twice: {seen[path.stem]} and {path}")
            seen[path.stem] = path
    return sorted(seen)
