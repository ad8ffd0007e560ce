"""Model registry: one Task class per (model, framework). The model names are the leaderboard keys
and the names configs use; a framework is an implementation of that model (PyTorch, TensorFlow).

A new model, or a TensorFlow build of an existing one, is one class decorated with
``@register_model(name, framework=...)`` in an installed zoo's package, plus its config in the
zoo's ``model/`` folder (replicate/zoo/installed.py; docs/developer_guide.md): the harness,
runner, check and k8s code look implementations up here and never name a model.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Callable, TypeVar

from replicate.config.schema import Framework
from replicate.errors import ConfigError

if TYPE_CHECKING:
    from replicate.zoo.installed import InstalledZoo

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
            raise ValueError(f"model {name!r} ({framework}) is already registered by "
                             f"{_REGISTRY[key].__module__}.{_REGISTRY[key].__qualname__}")
        cls.name = name  # type: ignore[attr-defined]  # T is a Task subclass: it has ``name``
        cls.framework = framework  # type: ignore[attr-defined]
        _REGISTRY[key] = cls
        return cls

    return decorate


def _load_all() -> None:
    """Import every module of each installed zoo's package, so their decorators run (once;
    importing an imported module is a dictionary lookup)."""
    from replicate.zoo.installed import installed_zoos

    for zoo in installed_zoos():
        name = zoo.spec.package
        try:
            package = importlib.import_module(name)
            # walk_packages yields a subpackage before it looks inside: each name is imported here first
            for info in pkgutil.walk_packages(package.__path__, f"{name}."):
                name = info.name
                importlib.import_module(name)
        except Exception as exc:   # a lab's module that does not import: one line naming it
            raise ConfigError(f"zoo {zoo.name}", f"module {name} does not import: {type(exc).__name__}: {exc}") \
                from None


def zoo_of(name: str, framework: str = "torch") -> "InstalledZoo | None":
    """The installed zoo the implementation comes from; None for a class registered outside any
    zoo's package (a test's own Task)."""
    from replicate.zoo.installed import zoo_of_module

    return zoo_of_module(get_task_class(name, framework).__module__)


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
