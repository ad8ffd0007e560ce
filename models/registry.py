"""Model registry: registry names are the leaderboard keys and the names configs use."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, TypeVar

from replicate.errors import ConfigError

_REGISTRY: dict[str, type] = {}
T = TypeVar("T", bound=type)


def register_model(name: str) -> Callable[[T], T]:
    """Class decorator: register a Task subclass under ``name``; a duplicate name raises."""

    def decorate(cls: T) -> T:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered by {_REGISTRY[name].__qualname__}")
        cls.name = name  # type: ignore[attr-defined]  # T is a Task subclass: it has ``name``
        _REGISTRY[name] = cls
        return cls

    return decorate


def _load_all() -> None:
    """Import every module of the ``models`` package so their decorators run (once)."""
    import models

    for info in pkgutil.iter_modules(models.__path__):
        if info.name not in ("registry", "task"):
            importlib.import_module(f"models.{info.name}")


def registered_names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get_task_class(name: str) -> type:
    """The Task class registered under ``name``; ConfigError naming the allowed ones otherwise."""
    _load_all()
    if name not in _REGISTRY:
        raise ConfigError("model", f"{name!r} has no registered implementation; registered: "
                                   f"{', '.join(sorted(_REGISTRY)) or 'none'}")
    return _REGISTRY[name]
