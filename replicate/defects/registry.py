"""The defect registry: named defects a job can have injected on purpose (``defect=NAME``).

A defect is a mistake a reengineer could make replicating a model, written as an ``apply`` hook
that changes only the one job it is injected into: a method of that job's Task (or of the model
it builds), its data, or its config. ``replicate selftest`` injects each one and measures whether
the benchmark notices (replicate/selftest.py); the harness never injects one unless asked.

Stages and types follow the reengineering defect study's taxonomy (where the defect sits in the
pipeline, and what kind of mistake it is).
"""

from __future__ import annotations

import datetime as dt
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from replicate.errors import ConfigError

STAGES = ("data", "model", "training", "evaluation")
TYPES = ("hyperparameter", "data pipeline", "model architecture/API misuse", "evaluation", "training procedure",
         "weights/checkpoint")
CONFIG_KEY = "defect"   # the root config key that selects a defect (conf/config.yaml)
# A target that stands for every registered (model, framework): a recipe defect any model can have.
EVERY_IMPLEMENTATION = "*"

# apply(task, cfg): change this job's Task (the registered implementation of its framework) or its
# resolved config, in place. Never a module-level patch: a Ray worker process runs other jobs after
# this one.
Apply = Callable[[Any, Any], None]


@dataclass(frozen=True)
class Target:
    """A model implementation a defect can be injected into: registry name and framework."""

    model: str
    framework: str = "torch"

    @classmethod
    def parse(cls, text: str) -> "Target":
        """``"yolov4"`` (torch) or ``"yolov3/tensorflow"``."""
        model, _, framework = text.partition("/")
        return cls(model, framework or "torch")

    def __str__(self) -> str:
        return self.model if self.framework == "torch" else f"{self.model}/{self.framework}"


@dataclass(frozen=True)
class Defect:
    """One named defect of the catalogue.

    Attributes:
        name: What ``defect=`` selects.
        target_names: The implementations it applies to, as written (``"model"``,
            ``"model/framework"`` or :data:`EVERY_IMPLEMENTATION`); the selftest injects it into
            the first of :attr:`targets`.
        stage: Where it sits: one of :data:`STAGES`.
        type: What kind of mistake it is: one of :data:`TYPES`.
        description: One line saying what is wrong.
        apply: The hook that injects it into one job (see :data:`Apply`).
        written_before_checks: The date (ISO) the defect was written, for one written before
            the benchmark's checks were looked at with it in mind, and never used to change them:
            the half that measures the power on defects nobody tuned the checks to. None for a
            defect written after seeing what the checks let through.
        check_fitted_after: The date (ISO) a check was written after this defect had passed
            the selftest, with it in mind: its catch is fitted, so it counts with the tuned half
            from then on (its first, blind measurement stays in the measured figures).
    """

    name: str
    target_names: tuple[str, ...]
    stage: str
    type: str
    description: str
    apply: Apply
    written_before_checks: Optional[str] = None
    check_fitted_after: Optional[str] = None

    @property
    def not_tuned(self) -> bool:
        """Written before the checks and no check fitted to it since: the power's blind half."""
        return self.written_before_checks is not None and self.check_fitted_after is None

    @property
    def targets(self) -> tuple[Target, ...]:
        """The implementations it applies to, :data:`EVERY_IMPLEMENTATION` expanded from the model
        registry (a model or framework registered later, in any installed zoo, is covered without
        editing the catalogue), led by the implementation a zoo asked for (:func:`lead`)."""
        found: list[Target] = []
        for name in self.target_names:
            if name == EVERY_IMPLEMENTATION:
                from replicate.zoo.registry import implementations

                registered = [Target(model, framework) for model, framework in implementations()]
                found += [t for t in _LEADERS.get(self.name, ()) if t in registered] + registered
            else:
                found.append(Target.parse(name))
        return tuple(dict.fromkeys(found))   # first occurrence kept: the leader stays first

    @property
    def why(self) -> str:
        """What a real reengineer would have got wrong (the hook's docstring)."""
        return " ".join((self.apply.__doc__ or "").split())

    def applies_to(self, model: str, framework: str) -> bool:
        return Target(model, framework) in self.targets


def led_by(model: str, targets: Sequence[str]) -> tuple[str, ...]:
    """``targets`` with ``model`` first: the implementation the selftest injects a defect into."""
    return (model, *(t for t in targets if t != model))


_REGISTRY: dict[str, Defect] = {}
# defect name -> the implementations a zoo asks a defect of every implementation to lead with
_LEADERS: dict[str, tuple[Target, ...]] = {}


def lead(name: str, target: str) -> None:
    """Ask that the harness's defect ``name`` (one of every implementation) be injected first into
    ``target`` (``"model"`` or ``"model/framework"``) by the selftest: a zoo picks which of its
    models measures it. Called from a zoo's defects package; a target no zoo registers is ignored."""
    _LEADERS[name] = (*_LEADERS.get(name, ()), Target.parse(target))


def register(name: str, targets: Sequence[str], stage: str, type: str, description: str,
             written_before_checks: Optional[str] = None,
             check_fitted_after: Optional[str] = None) -> Callable[[Apply], Apply]:
    """Decorator: register the decorated ``apply`` hook as defect ``name``.

    Args:
        name: The defect's name (what ``defect=`` selects).
        targets: ``"model"``, ``"model/framework"`` or :data:`EVERY_IMPLEMENTATION`; the first is
            where the selftest injects it.
        stage: One of :data:`STAGES`.
        type: One of :data:`TYPES`.
        description: One line; the hook's docstring says what a reengineer got wrong.
        written_before_checks: ISO date, for a defect written before the checks were looked at
            with it in mind (see :class:`Defect`).
        check_fitted_after: ISO date a check was written with this defect in mind, after it
            passed (see :class:`Defect`).

    Raises:
        ValueError: a duplicate name, an unknown stage or type, no target, no docstring, or a
            date that is not ISO.
    """

    def decorate(apply: Apply) -> Apply:
        if name in _REGISTRY:
            raise ValueError(f"defect {name!r} is registered twice")
        if stage not in STAGES or type not in TYPES:
            raise ValueError(f"defect {name!r}: stage {stage!r} / type {type!r} not in {STAGES} / {TYPES}")
        if not targets or not (apply.__doc__ or "").strip():
            raise ValueError(f"defect {name!r} needs targets and a docstring (what a reengineer got wrong)")
        for date in (written_before_checks, check_fitted_after):
            if date is not None:
                dt.date.fromisoformat(date)   # ValueError: not an ISO date
        _REGISTRY[name] = Defect(name, tuple(targets), stage, type, description, apply, written_before_checks,
                                 check_fitted_after)
        return apply

    return decorate


def _load_catalogue() -> None:
    """Import every module of the harness's catalogue (defects of any recipe) and of each
    installed zoo's defects package so their decorators run (once)."""
    from replicate.zoo.installed import installed_zoos

    names = ["replicate.defects.catalogue", *(z.spec.defects for z in installed_zoos() if z.spec.defects)]
    for name in names:
        package = importlib.import_module(name)
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{info.name}")


def all_defects() -> list[Defect]:
    """Every registered defect, by name."""
    _load_catalogue()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def get_defect(name: str) -> Defect:
    """The defect ``name``; ConfigError naming ``defect`` and the known names otherwise."""
    _load_catalogue()
    if name not in _REGISTRY:
        raise ConfigError(CONFIG_KEY, f"unknown {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def check_defect(name: str, model: str, framework: str) -> Defect:
    """The defect ``name`` if it applies to ``model`` in ``framework``; ConfigError otherwise."""
    defect = get_defect(name)
    if not defect.applies_to(model, framework):
        raise ConfigError(CONFIG_KEY, f"{name!r} does not apply to {Target(model, framework)}; it applies to: "
                                      f"{', '.join(map(str, defect.targets))}")
    return defect
