"""Optimizer and learning-rate schedule from a recipe, with the linear scaling rule."""

from __future__ import annotations

import math
from typing import Any, Iterable, Optional

import torch

from replicate.config.schema import Optimizer, Schedule


def scaled_lr(recipe: Any) -> tuple[float, dict[str, Any]]:
    """Apply the linear scaling rule (Goyal et al. 2017) when the batch differs from the recipe's.

    Returns the learning rate and a record of what was done, kept with the result.
    """
    base, batch, ref = float(recipe.lr), int(recipe.batch_size), recipe.recipe_batch_size
    if ref is None or int(ref) == batch:
        return base, {"applied": False, "lr": base, "batch_size": batch, "recipe_batch_size": ref}
    lr = base * batch / int(ref)
    return lr, {"applied": True, "rule": "linear", "base_lr": base, "lr": lr,
                "batch_size": batch, "recipe_batch_size": int(ref)}


def decay_groups(params: Iterable, decayed: Iterable) -> list[dict[str, Any]]:
    """``params`` as optimizer groups: those in ``decayed`` take the recipe's weight decay, the
    others none (``weight_decay`` 0 in their group). Empty groups are left out."""
    chosen = {id(p) for p in decayed}
    params = list(params)
    groups: list[dict[str, Any]] = [{"params": [p for p in params if id(p) in chosen]},
                                    {"params": [p for p in params if id(p) not in chosen], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(recipe: Any, params: Iterable, lr: float,
                    decayed: Optional[Iterable] = None) -> torch.optim.Optimizer:
    """The recipe's optimizer over ``params``; weight decay on ``decayed`` only when given
    (Task.decayed_parameters), else on every parameter."""
    name = recipe.optimizer
    groups: Any = list(params) if decayed is None else decay_groups(params, decayed)
    if name == Optimizer.SGD:
        return torch.optim.SGD(groups, lr=lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    cls = torch.optim.Adam if name == Optimizer.ADAM else torch.optim.AdamW
    return cls(groups, lr=lr, betas=tuple(recipe.betas), weight_decay=recipe.weight_decay)


def lr_factor(step: int, total_steps: int, steps_per_unit: float, recipe: Any) -> float:
    """Multiplier of the base LR at ``step``: warm-up (linear, or darknet's power burn-in), then
    the recipe's schedule.

    Milestones and decay_start are in the recipe's unit (epochs when it gives epochs, else steps);
    ``steps_per_unit`` converts them.
    """
    factor = 1.0
    if step < recipe.warmup_steps:
        alpha = step / recipe.warmup_steps
        power = recipe.get("warmup_power")
        factor = alpha ** power if power is not None else recipe.warmup_factor * (1 - alpha) + alpha
    if recipe.schedule == Schedule.MULTISTEP:
        passed = sum(1 for m in recipe.milestones if step >= m * steps_per_unit)
        return factor * recipe.gamma ** passed
    if recipe.schedule == Schedule.LINEAR_DECAY:
        start = (recipe.decay_start or 0) * steps_per_unit
        if step < start:
            return factor
        return factor * max(0.0, 1.0 - (step - start) / max(1.0, total_steps - start))
    return factor


def total_steps(recipe: Any, train_size: int, schedule_fraction: float) -> tuple[int, float]:
    """Steps of the run (a fraction of the recipe for tier short) and steps per recipe unit."""
    if recipe.steps is not None:
        full, per_unit = int(recipe.steps), 1.0
    else:
        per_unit = math.ceil(train_size / recipe.batch_size)
        full = int(recipe.epochs * per_unit)
    return max(1, math.ceil(full * schedule_fraction)), float(per_unit)
