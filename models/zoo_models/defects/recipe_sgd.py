"""A recipe defect of this zoo's SGD recipes (the torchvision detectors' smoke recipes)."""

from __future__ import annotations

from typing import Any

from replicate.config.selection import model_tier
from replicate.defects.registry import register

SGD_RECIPES = ("faster_rcnn", "mask_rcnn", "retinanet")   # smoke recipes with optimizer: sgd


@register("sgd_momentum_zero", SGD_RECIPES, stage="training", type="hyperparameter",
          description="SGD without momentum (torch's default 0) instead of the recipe's 0.9")
def sgd_momentum_zero(task: Any, cfg: Any) -> None:
    """The optimizer is built as ``torch.optim.SGD(params, lr)``: momentum is left at torch's
    default 0 where the recipe (and Detectron's config it came from) says 0.9."""
    model_tier(cfg).recipe.momentum = 0.0
