"""Model registry: one Task class per (model, framework). The model names are the leaderboard keys
and the names configs use; a framework is an implementation of that model (PyTorch, TensorFlow).

A new model, or a TensorFlow build of an existing one, is one class decorated with
``@register_model(name, framework=...)`` plus its config (docs/developer_guide.md): the harness,
runner, check and k8s code look implementations up here and never name a model.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, TypeVar

from replicate.config.schema import Framework
from replicate.errors import ConfigError

# The frameworks an implementation may run in, in the order a model's default is picked
# (the schema's ``model.frameworks`` lists them in this order too).
FRAMEWORKS = tuple(f.value for f in Framework)

_REGISTRY: dict[tuple[str, str], type] = {}
T = TypeVar("T", bound=type)


def register_model(name: str, framework: str = "torch") -> Callable[[T], T]:
    """Class decorator: register a Task subclass as model ``name`` in ``framework``.

    Raises:
        ValueError: the (name, framework) pair is already registered, or the framework is unknown.
    """
    if framework not in FRAMEWORKS:
        raise ValueError(f"framework {framework!r} of model {name!r} is not one of {FRAMEWORKS}")

    def decorate(cls: T) -> T:
        key = (name, framework)
        if key in _REGISTRY:
            raise ValueError(f"model {name!r} ({framework}) is already registered by {_REGISTRY[key].__qualname__}")
        cls.name = name  # type: ignore[attr-defined]  # T is a Task subclass: it has ``name``
        cls.framework = framework  # type: ignore[attr-defined]
        _REGISTRY[key] = cls
        return cls

    return decorate


def _load_all() -> None:
    """Import every module of the ``replicate.models`` package and its family folders, so their
    decorators run (once; importing an imported module is a dictionary lookup)."""
    import replicate.models as package

    skipped = {f"{package.__name__}.registry", f"{package.__name__}.task"}   # the interface, no models
    for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
        if info.name not in skipped:
            importlib.import_module(info.name)


def registered_names() -> list[str]:
    """Every model with at least one implementation, sorted."""
    _load_all()
    return sorted({name for name, _ in _REGISTRY})


def frameworks_of(name: str) -> tuple[str, ...]:
    """The frameworks ``name`` is implemented in, in :data:`FRAMEWORKS` order (empty if none)."""
    _load_all()
    return tuple(fw for fw in FRAMEWORKS if (name, fw) in _REGISTRY)


def implementations() -> list[tuple[str, str]]:
    """Every registered (model, framework), by model then framework order."""
    _load_all()
    return [(name, fw) for name in sorted({n for n, _ in _REGISTRY}) for fw in FRAMEWORKS if (name, fw) in _REGISTRY]


def get_task_class(name: str, framework: str = "torch") -> type:
    """The Task class of ``name`` in ``framework``; ConfigError naming the allowed ones otherwise."""
    _load_all()
    if (name, framework) in _REGISTRY:
        return _REGISTRY[(name, framework)]
    if not frameworks_of(name):
        raise ConfigError("model", f"{name!r} has no registered implementation; registered: "
                                   f"{', '.join(registered_names()) or 'none'}")
    raise ConfigError("framework", f"{framework!r} is not an implementation of {name}; "
                                   f"allowed: {', '.join(frameworks_of(name))}")
