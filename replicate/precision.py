"""A job's numeric precision: which one it asks for, when it autocasts, and the deviation it declares.

Every reference trains and evaluates in fp32 (replicate/config/schema.py, ``ModelTierConfig.precision``),
so fp32 is every tier's default. ``amp`` (fp16 autocast with a GradScaler) is a choice a lab makes
for speed; it is then declared beside the verdict as a deviation, here, never listed by hand.
Pure functions of the config: no framework is imported.
"""

from __future__ import annotations

from typing import Any, Optional

from replicate.config.schema import Precision
from replicate.config.selection import model_tier

# Shown beside the verdict of a job that asks for amp (catalog, console, report, W&B).
AMP_DEVIATION = (
    "trains/evaluates in fp16 autocast on CUDA (precision: amp); the reference runs fp32; expected effect: "
    "box and score arithmetic rounded to fp16 (torchvision's BoxCoder decodes in the regression's fp16 dtype, "
    "so box centres at 1024-2048 px move by up to 0.5 px), AP equal or lower by an amount measured by "
    "scripts/gpu_check/precision_ab.py, not here; a CPU job runs fp32 whatever it asks")


def chosen_precision(cfg: Any) -> str:
    """The precision a job asks for: ``precision`` set for the whole job, else its tier's."""
    job_wide = cfg.get("precision")
    return str(job_wide if job_wide is not None else model_tier(cfg).precision)


def precision_key(cfg: Any) -> str:
    """The config key the job's precision came from (what a refusal names)."""
    return "precision" if cfg.get("precision") is not None else f"model.tiers.{cfg.tier.name}.precision"


def autocasts(precision: str, device_type: str) -> bool:
    """Whether a torch job runs its forward passes in fp16 autocast: amp asked for, on CUDA.
    A CPU job computes in fp32 whatever it asks (the smoke tier's recorded references are fp32)."""
    return precision == Precision.AMP and device_type == "cuda"


def declared_deviations(listed: Optional[list[str]], precision: str) -> Optional[list[str]]:
    """A tier's ``deviations`` plus the one its precision adds (amp); None stays None under fp32
    (nobody has compared the tier with its reference yet)."""
    if precision != Precision.AMP:
        return None if listed is None else list(listed)
    return [*(listed or []), AMP_DEVIATION]
