"""What a composed config selects for its job: framework, variant and the reference it is
compared with. Pure functions of the config: validation checks, selection never mutates."""

from __future__ import annotations

from typing import Any, Optional

from omegaconf import DictConfig


def model_tier(cfg: DictConfig) -> Any:
    """The model's block for the job's tier (``model.tiers[<tier.name>]``: variant, data, recipe,
    input size, references), beside the tier's policy in ``cfg.tier`` (what it compares with,
    its false-alarm budget, its early check). The one place the two are joined."""
    return cfg.model.tiers[cfg.tier.name]


def job_data(cfg: DictConfig) -> Any:
    """The dataset the job's tier reads (``datasets[<model tier>.data]``)."""
    return cfg.datasets[model_tier(cfg).data]


def chosen_framework(cfg: DictConfig) -> str:
    """The framework a job runs: explicit, else TensorFlow on TPU, else the model's first."""
    if cfg.framework is not None:
        return str(cfg.framework)
    if cfg.hardware.accelerator == "tpu":
        return "tensorflow"
    return str(cfg.model.frameworks[0])


def chosen_variant(cfg: DictConfig) -> str:
    return str(cfg.variant if cfg.variant is not None else model_tier(cfg).variant)


def chosen_reference(cfg: DictConfig) -> Optional[Any]:
    """The recorded reference the job's tier compares with: the framework's own
    (``framework_references.NAME``, calibrated on that implementation) when it has one, else the
    tier's ``reference``; None when nothing is recorded."""
    tier = model_tier(cfg)
    own = tier.framework_references.get(chosen_framework(cfg))
    return own if own is not None else tier.reference
