"""Build the pluggable infrastructure a config names by ``_target_`` (store, scheduler, logger).

Hydra wraps every error raised by a target's constructor in an InstantiationException, so a typed
ZooError (a malformed ``store.url``, a bad ``logger.mode``) would reach the user as a traceback
instead of exit 2 with one line naming the key; :func:`build` unwraps it.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from replicate.errors import ConfigError, ZooError


def build(node: DictConfig, key: str) -> Any:
    """``hydra.utils.instantiate(node)``, re-raising a constructor's typed error as itself; any
    other failure to build is a ConfigError naming ``KEY._target_`` (exit 2, never a traceback)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        # not recursive: a nested ``_target_`` (say under logger.*) is data, never called
        return instantiate(node, _recursive_=False)
    except InstantiationException as exc:
        if isinstance(exc.__cause__, ZooError):
            raise exc.__cause__ from None
        cause = exc.__cause__ or exc
        raise ConfigError(f"{key}._target_", f"{node.get('_target_')!r} cannot be built: "
                                             f"{type(cause).__name__}: {str(cause).splitlines()[0][:200]}") from None
