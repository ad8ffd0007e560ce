"""The learning rate each optimizer applied, held to the recipe's schedule at every logged step.

The loops read the rate from the optimizer itself (torch: every param_group's ``lr`` when the
optimizer stepped, before the scheduler moves it on; Keras: the optimizer's ``learning_rate``
variable the compiled step read), never from our own formula. ``RecipeSchedule.expected`` is the
recipe's rate for that step, computed by replicate/runner/optim.py (the formula's one home). A
difference beyond the framework's rounding is a ScheduleError: the job fails at the logged step
where it showed, before the rest of its training is paid for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from replicate.errors import ScheduleError
from replicate.runner.optim import lr_factor

# torch keeps the rate as a Python float (LambdaLR: initial_lr * factor, as our formula computes it)
REL_TOL = 1e-9


@dataclass(frozen=True)
class RecipeSchedule:
    """The recipe's rate of a job: scaled base rate x ``lr_factor``; ``float32`` where the
    framework keeps the rate in a float32 variable (Keras)."""

    base_lr: float
    steps: int
    per_unit: float
    recipe: Any
    float32: bool = False

    def expected(self, index: int) -> float:
        """The rate of the optimizer step with 0-based ``index`` (the ``index + 1``-th update)."""
        rate = self.base_lr * lr_factor(index, self.steps, self.per_unit, self.recipe)
        return float(np.float32(rate)) if self.float32 else rate


def torch_applied(optimizers: dict[str, Any]) -> dict[str, list[float]]:
    """Each torch optimizer's param_group rates, by optimizer name."""
    return {name: [float(group["lr"]) for group in opt.param_groups] for name, opt in optimizers.items()}


def keras_applied(optimizer: Any) -> dict[str, list[float]]:
    """The Keras optimizer's rate variable, as the one group of optimizer "main"."""
    return {"main": [float(np.asarray(optimizer.learning_rate))]}


def check_step(step: int, applied: dict[str, list[float]], schedule: RecipeSchedule) -> float:
    """Hold the rates applied by the ``step``-th update (1-based, as the curve counts) to the
    recipe's; returns the recipe's rate. Raises ScheduleError naming the step and both rates."""
    expected = schedule.expected(step - 1)
    for name, rates in applied.items():
        for group, rate in enumerate(rates):
            if not math.isclose(rate, expected, rel_tol=REL_TOL, abs_tol=0.0):
                where = "" if (len(applied), len(rates)) == (1, 1) else f" (optimizer {name}, group {group})"
                raise ScheduleError(f"schedule: lr at step {step} was {rate:.6g}, the recipe's is "
                                    f"{expected:.6g}{where}")
    return expected
