"""Compose the Hydra config from ``conf/`` plus command-line overrides, then validate it.

Hydra's own errors for a bad override are long and sometimes tracebacks; here every failure
becomes a ConfigError that names the key and the allowed values.
"""

from __future__ import annotations

from typing import Any, Sequence

import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from replicate.config.conf_tree import GROUPS, conf_dir, group_options, search_dirs
from replicate.config.overrides import Overrides
from replicate.errors import ConfigError


def _check_group_overrides(overrides: Overrides) -> None:
    """Name unknown group choices ourselves: Hydra's message lists search paths, not options."""
    for key in overrides.keys() & set(GROUPS):
        value = overrides.value(key)
        if value is not None and value not in group_options(key):
            raise ConfigError(key, f"unknown {value!r}; allowed: {', '.join(group_options(key))}")


def _split_overrides(overrides: Overrides) -> tuple[list[str], list[Any]]:
    """Group choices (model=..., +data@...=...) go to Hydra; values are applied on the typed config.

    Applying values after the schema merge means any key the schema knows can be set without
    Hydra's ``+`` (schema defaults are not in the YAML files), while a misspelt key still fails.
    """
    groups, values = [], []
    for item in overrides.parsed:
        if Overrides.key(item) in GROUPS:
            groups.append(Overrides.text(item))
        else:
            values.append(item)
    return groups, values


def _apply_values(cfg: DictConfig, values: list[Any]) -> None:
    for item in values:
        key = item.key_or_group
        if item.is_delete():
            raise ConfigError(key, "deleting a key is not supported; set it to null instead")
        try:
            # "+key" adds only where the schema leaves keys open (recipe.extra, logger, datasets...);
            # anywhere else an unknown key is a typo, refused with its name
            value, merge = item.value(), True
            if isinstance(value, dict) and OmegaConf.select(cfg, key, default=0) is None:
                value, merge = _typed(cfg, key, value), False   # nothing to merge into: replace the null
            OmegaConf.update(cfg, key, value, merge=merge, force_add=item.is_add() and _open_for_keys(cfg, key))
        except OmegaConfBaseException as exc:
            message = _first_line(exc)
            if "not in struct" in message or "Key '" in message:
                message = f"no such key in the config (check its spelling); {message}"
            raise ConfigError(key, message) from None


def _typed(cfg: DictConfig, key: str, value: dict) -> Any:
    """A mapping given for a section that is null (an optional typed one, e.g. a tier's
    ``backbone_weights``), checked against that section's schema: OmegaConf merges nothing into
    None, and assigning a plain dict to a typed field is refused."""
    parent_key, _, name = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    node = parent._get_node(name) if isinstance(parent, DictConfig) else None
    schema = getattr(getattr(node, "_metadata", None), "ref_type", None)
    if not isinstance(schema, type) or schema in (dict, Any):
        return value
    return OmegaConf.merge(OmegaConf.structured(schema), value)


def _open_for_keys(cfg: DictConfig, key: str) -> bool:
    """Whether the deepest existing node above ``key`` is a free-form mapping (a ``dict`` field of
    the schema), not a typed section whose keys are fixed."""
    parts = key.split(".")[:-1]
    while parts and OmegaConf.select(cfg, ".".join(parts), default=None) is None:
        parts.pop()
    node = OmegaConf.select(cfg, ".".join(parts)) if parts else cfg
    return isinstance(node, DictConfig) and OmegaConf.get_type(node) in (dict, None)


def compose_config(overrides: Sequence[str] | Overrides = ()) -> DictConfig:
    """Compose the root config with overrides, resolved and validated.

    Args:
        overrides: Hydra override strings, e.g. ``["model=faster_rcnn", "seed=1"]``.

    Returns:
        The resolved config, typed by the schema and validated.

    Raises:
        ConfigError: an override or a config value is invalid; the message names the key.
    """
    from replicate.config.validate import apply_schema, validate  # late: validate imports the registry

    overrides = Overrides.parse(overrides)
    _check_group_overrides(overrides)
    groups, values = _split_overrides(overrides)
    cfg = _hydra_compose("config", [*groups, _search_path_override()], overrides)
    cfg = apply_schema(cfg)
    _apply_values(cfg, values)
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:
        raise ConfigError(str(getattr(exc, "full_key", None) or "config"), _first_line(exc)) from None
    return validate(cfg)


def _hydra_compose(config_name: str, hydra_overrides: list[str], overrides: Overrides) -> DictConfig:
    """Hydra's composition of ``conf/<config_name>.yaml`` with ``hydra_overrides``; each of its
    failures (a bad override, a YAML syntax error) a ConfigError naming the key or file."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return compose(config_name=config_name, overrides=hydra_overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(_key_of(exc, overrides), _first_line(exc)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{mark.name}:{mark.line + 1}" if mark else "conf"
        raise ConfigError(where, f"YAML syntax error: {getattr(exc, 'problem', None) or exc}") from None
    finally:
        GlobalHydra.instance().clear()


# The keys a store-only composition takes (conf/read.yaml): where the store is.
STORE_KEYS = ("results_dir", "store")


def compose_store_config(overrides: Sequence[str] | Overrides = (), command: str = "this command") -> DictConfig:
    """Compose only where the store is (``conf/read.yaml``: ``results_dir`` and the ``store``
    group), resolved; the read commands open their store with it.

    Raises:
        ConfigError: an override of any other key (naming it and what applies), or a bad value.
    """
    overrides = Overrides.parse(overrides)
    other = sorted(k for k in overrides.keys() if k.split(".")[0] not in STORE_KEYS)
    if other:
        raise ConfigError(other[0], f"`replicate {command}` reads the store: only results_dir= and store= "
                                    "(store.url=...) apply")
    _check_group_overrides(overrides)   # store=NAME: one of conf/store/
    cfg = _hydra_compose("read", overrides.as_list(), overrides)
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:   # e.g. store=postgres without $ZOO_STORE_URL
        raise ConfigError(str(getattr(exc, "full_key", None) or "store.url"), _first_line(exc)) from None
    from replicate.config.values import check_store_location

    check_store_location(cfg)
    return cfg


def _search_path_override() -> str:
    """Hydra's search path beyond ``conf/``: each installed zoo's config folder (conf_tree.search_dirs)."""
    return "hydra.searchpath=[" + ",".join(f"'file://{folder}'" for folder in search_dirs()[1:]) + "]"


def _key_of(exc: Exception, overrides: Overrides) -> str:
    key = getattr(exc, "full_key", None)
    if key:
        return str(key)
    text = str(exc)
    return next((name for name in sorted(overrides.keys()) if name and name in text), "overrides")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
