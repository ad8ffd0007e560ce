"""The zoos installed beside the harness, found through one extension point.

A zoo is a Python distribution that names, in its ``pyproject.toml``::

    [project.entry-points."zoo_replicate.zoos"]
    my-zoo = "my_zoo.zoo:ZOO"

a :class:`ZooSpec`: the package whose modules register Tasks (``@register_model``), the folder of
its model configs (``model/NAME.yaml``, added to the config search path so ``model=NAME`` finds
them), and optionally its defects, its fixed evaluation weights and extra CLI commands. The
harness names no zoo and no model: the project's own seven models are one such zoo
(``models/``), installed with it; a lab's zoo is installed the same way, without a fork.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Optional, Sequence

from replicate.errors import ConfigError

ENTRY_POINT_GROUP = "zoo_replicate.zoos"


@dataclass(frozen=True)
class ZooSpec:
    """What a zoo offers the harness (the object its entry point names).

    Attributes:
        package: The importable package whose modules register Tasks; every module below it is
            imported once, so that their decorators run.
        config_dir: The folder holding ``model/NAME.yaml`` for each of its models.
        defects: A package whose modules register the zoo's own defects (``replicate selftest``),
            or None; the harness's defects of any recipe apply to its models as well.
        evaluation_weights_dir: Where the fixed evaluation weights its smoke tiers name live, or None.
        commands: Modules each adding one CLI subcommand (``add_parser(subparsers)``, ``run(args)``).
    """

    package: str
    config_dir: Path
    defects: Optional[str] = None
    evaluation_weights_dir: Optional[Path] = None
    commands: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class InstalledZoo:
    """A zoo found installed: its entry point's name, its distribution and version, its spec."""

    name: str
    distribution: str
    version: str
    spec: ZooSpec

    def owns_module(self, module: str) -> bool:
        """True when ``module`` lies in this zoo's package."""
        return module == self.spec.package or module.startswith(self.spec.package + ".")


@functools.cache
def installed_zoos() -> tuple[InstalledZoo, ...]:
    """Every zoo installed in this environment, by name (read once per process).

    Raises:
        ConfigError: an entry point does not load, does not name a ZooSpec, or two zoos share a
            package; the message names the entry point.
    """
    zoos: list[InstalledZoo] = []
    for point in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        key = f"entry point {ENTRY_POINT_GROUP}:{point.name}"
        try:
            spec = point.load()
        except Exception as exc:   # a lab's package that does not import: said in one line, never a traceback
            raise ConfigError(key, f"{point.value!r} does not load: {type(exc).__name__}: {exc}") from None
        if not isinstance(spec, ZooSpec):
            raise ConfigError(key, f"{point.value!r} is a {type(spec).__name__}, not a replicate.zoo.installed.ZooSpec")
        if not (Path(spec.config_dir) / "model").is_dir():
            raise ConfigError(key, f"config_dir {spec.config_dir} has no model/ folder")
        dist = point.dist
        zoos.append(InstalledZoo(point.name, dist.name if dist else point.name, dist.version if dist else "unknown",
                                 spec))
    check_distinct_packages(zoos)
    return tuple(zoos)


def check_distinct_packages(zoos: Sequence[InstalledZoo]) -> None:
    """Each zoo's package is its own: a Task's zoo is read from its module's package.

    Raises:
        ConfigError: two zoos name the same package; the message names the second's entry point.
    """
    packages = [z.spec.package for z in zoos]
    for zoo in zoos:
        if packages.count(zoo.spec.package) > 1:
            raise ConfigError(f"entry point {ENTRY_POINT_GROUP}:{zoo.name}",
                              f"package {zoo.spec.package!r} is claimed by more than one zoo")


def zoo_of_module(module: str) -> Optional[InstalledZoo]:
    """The installed zoo whose package holds ``module``; None for a class defined elsewhere
    (a test's own Task)."""
    return next((zoo for zoo in installed_zoos() if zoo.owns_module(module)), None)


def model_config_dirs() -> tuple[Path, ...]:
    """Each installed zoo's config folder (holding ``model/``), in zoo-name order."""
    return tuple(Path(zoo.spec.config_dir) for zoo in installed_zoos())
