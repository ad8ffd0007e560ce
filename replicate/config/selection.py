"""What a composed config selects for its job: framework, variant and the reference it is
compared with. Pure functions of the config: validation checks, selection never mutates."""

from __future__ import annotations

from typing import Any, Optional

from omegaconf import DictConfig


def chosen_framework(cfg: DictConfig) -> str:
    """The framework a job runs: explicit, else TensorFlow on TPU, else the model's first."""
    if cfg.framework is not None:
        return str(cfg.framework)
    if cfg.hardware.accelerator == "tpu":
        return "tensorflow"
    return str(cfg.model.frameworks[0])


def chosen_variant(cfg: DictConfig) -> str:
    return str(cfg.variant if cfg.variant is not None else cfg.model.tiers[cfg.tier.name].variant)


def chosen_reference(cfg: DictConfig) -> Optional[Any]:
    """The recorded reference the job's tier compares with: the framework's own
    (``framework_references.NAME``, calibrated on that implementation) when it has one, else the
    tier's ``reference``; None when nothing is recorded."""
    tier = cfg.model.tiers[cfg.tier.name]
    own = tier.framework_references.get(chosen_framework(cfg))
    return own if own is not None else tier.reference
