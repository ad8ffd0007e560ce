"""Build the pluggable infrastructure a config names by ``_target_`` (store, scheduler, logger).

Hydra wraps every error raised by a target's constructor in an InstantiationException, so a typed
ZooError (a malformed ``store.url``, a bad ``logger.mode``) would reach the user as a traceback
instead of exit 2 with one line naming the key; :func:`build` unwraps it.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from replicate.errors import ZooError


def build(node: DictConfig) -> Any:
    """``hydra.utils.instantiate(node)``, re-raising a constructor's typed error as itself."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        # not recursive: a nested ``_target_`` (say under logger.*) is data, never called
        return instantiate(node, _recursive_=False)
    except InstantiationException as exc:
        if isinstance(exc.__cause__, ZooError):
            raise exc.__cause__ from None
        raise
