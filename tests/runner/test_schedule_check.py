"""The learning rate the optimizer applied, held to the recipe's schedule at every logged step.

The recipe's formula (replicate/runner/optim.py) is first held to the references' own schedules,
restated here; then a clean run passes the check in both frameworks, and two schedule defects of
the training loop (not in the selftest catalogue) make the job fail naming the step.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from omegaconf import OmegaConf

from replicate.config.schema import RecipeConfig
from replicate.errors import ScheduleError
from replicate.failures import classify
from replicate.harness import run_one
from replicate.runner import optim, tf_loop, torch_loop
from replicate.runner.optim import lr_factor, total_steps
from replicate.runner.schedule_check import RecipeSchedule, check_step

# Short runs whose 4 steps pass a linear warm-up (2 steps) and a milestone (step index 3)
SCHEDULE = ["model.tiers.smoke.recipe.warmup_steps=2", "model.tiers.smoke.recipe.milestones=[3]",
            "tier.compare_with=none", "tier.early_check.enabled=false"]


def _recipe(**kw: Any) -> Any:
    return OmegaConf.merge(OmegaConf.structured(RecipeConfig(lr=0.02, batch_size=2, source="test")), kw)


# ------------------------------------------------------- the formula, held to the references
def torchvision_detection_lr(base: float, epoch: int, iteration: int, iters_per_epoch: int, lr_steps: list[int],
                             gamma: float) -> float:
    """Restates pytorch/vision references/detection: train.py's MultiStepLR(milestones=lr_steps,
    gamma) stepped once per epoch, and engine.py's train_one_epoch, which in epoch 0 only adds
    LinearLR(start_factor=1/1000, total_iters=min(1000, len(data_loader) - 1)) stepped per
    iteration; LinearLR's factor is start + (1 - start) * min(i, total) / total (torch docs)."""
    rate = base * gamma ** sum(1 for m in lr_steps if epoch >= m)
    if epoch == 0:
        start, total = 1.0 / 1000, min(1000, iters_per_epoch - 1)
        rate *= start + (1.0 - start) * min(iteration, total) / total
    return rate


def darknet_rate(learning_rate: float, batch_num: int, burn_in: int, power: float, steps: list[int],
                 scales: list[float]) -> float:
    """Restates pjreddie/darknet src/network.c get_current_rate, policy STEPS: during burn-in
    learning_rate * (batch_num / burn_in) ** power; then learning_rate times every scale whose
    step is <= batch_num (the loop returns at the first step > batch_num)."""
    if batch_num < burn_in:
        return learning_rate * (batch_num / burn_in) ** power
    rate = learning_rate
    for step, scale in zip(steps, scales):
        if step > batch_num:
            return rate
        rate *= scale
    return rate


def test_warmup_and_milestones_are_torchvision_detection_references():
    per_epoch, epochs = 12, 5
    r = _recipe(epochs=epochs, milestones=[2, 4], gamma=0.1, warmup_steps=per_epoch - 1, warmup_factor=0.001)
    steps, per_unit = total_steps(r, train_size=per_epoch * 2, schedule_fraction=1.0)
    assert (steps, per_unit) == (epochs * per_epoch, per_epoch)
    for step in range(steps):
        epoch, iteration = divmod(step, per_epoch)
        want = torchvision_detection_lr(0.02, epoch, iteration, per_epoch, [2, 4], 0.1)
        assert math.isclose(0.02 * lr_factor(step, steps, per_unit, r), want, rel_tol=1e-9), step


def test_burn_in_and_steps_are_darknets_get_current_rate():
    """As a function of the update counter; the loop counts updates from 0, darknet from 1 (the
    report says so: a one-update shift, not tested here)."""
    r = _recipe(steps=60, milestones=[40, 50], gamma=0.1, warmup_steps=20, warmup_power=4, lr=0.001)
    for batch_num in range(60):
        want = darknet_rate(0.001, batch_num, 20, 4, [40, 50], [0.1, 0.1])
        # darknet returns a C float: its rounding, not ours, bounds the agreement
        assert math.isclose(0.001 * lr_factor(batch_num, 60, 1.0, r), want, rel_tol=1e-6), batch_num


# --------------------------------------------------------------------------- the check itself
def test_check_names_the_step_and_both_rates():
    schedule = RecipeSchedule(0.02, 4, 1.0, _recipe(steps=4, milestones=[3], warmup_steps=2))
    assert check_step(4, {"main": [0.002]}, schedule) == pytest.approx(0.002)
    with pytest.raises(ScheduleError, match=r"schedule: lr at step 4 was 0\.02, the recipe's is 0\.002$") as err:
        check_step(4, {"main": [0.02]}, schedule)
    failure = classify(err.value, "training")
    assert (failure.stage, failure.impact) == ("training", "incorrect functionality")
    assert failure.message.startswith("schedule: lr at step 4")


def test_keras_float32_rate_is_held_to_the_float32_rounding():
    schedule = RecipeSchedule(0.02, 4, 1.0, _recipe(steps=4, warmup_steps=3), float32=True)
    want = 0.02 * lr_factor(1, 4, 1.0, schedule.recipe)
    rounded = float(np.float32(want))
    assert rounded != want and check_step(2, {"main": [rounded]}, schedule) == rounded
    with pytest.raises(ScheduleError):
        check_step(2, {"main": [rounded * (1 + 1e-6)]}, schedule)


# ------------------------------------------------------------------------- runs, clean and broken
def _yolo(results_dir: Path, shapes_root: Path, tiny: list[str], *extra: str) -> list[str]:
    return ["model=yolov3", "scheduler=inline", f"results_dir={results_dir}", f"datasets.shapes.root={shapes_root}",
            *tiny, *SCHEDULE, *extra]


def _with_recipe(change: dict[str, Any]):
    """A loop's schedule built from a changed recipe: the defect sits in the loop, the check reads
    the job's recipe."""
    def factor(step: int, steps: int, per_unit: float, recipe: Any) -> float:
        return optim.lr_factor(step, steps, per_unit, OmegaConf.merge(recipe, change))
    return factor


def _logged_rates(row: dict) -> list[tuple[int, float]]:
    return [(p["step"], p["lr_applied"]) for p in row["curve"] if "lr_applied" in p]


def test_a_clean_torch_run_passes_the_check_at_every_logged_step(results_dir, shapes_root, tiny):
    (row,) = run_one(_yolo(results_dir, shapes_root, tiny), echo=lambda _: None).jobs
    assert row["failure_message"] is None, row["failure_message"]
    rates = _logged_rates(row)
    assert [s for s, _ in rates] == [1, 2, 3, 4]
    # warm-up from warmup_factor, full rate, then the milestone's gamma: the schedule was exercised
    assert rates[0][1] < rates[1][1] < rates[2][1] and rates[3][1] == pytest.approx(rates[2][1] * 0.1)


@pytest.mark.parametrize("defect, change, step", [
    ("milestones never applied", {"milestones": []}, 4),
    ("warm-up half its length", {"warmup_steps": 1}, 2),
])
def test_a_torch_schedule_defect_fails_the_job_naming_the_step(results_dir, shapes_root, tiny, monkeypatch,
                                                                defect, change, step):
    monkeypatch.setattr(torch_loop, "lr_factor", _with_recipe(change))
    (row,) = run_one(_yolo(results_dir, shapes_root, tiny), echo=lambda _: None).jobs
    assert row["verdict"] == "ERROR", defect
    assert (row["failure_stage"], row["failure_impact"]) == ("training", "incorrect functionality")
    assert f"schedule: lr at step {step} was" in row["failure_message"], row["failure_message"]


@pytest.mark.slow   # about 70 s on 2 shared cores (two TensorFlow jobs)
def test_a_clean_tensorflow_run_passes_and_skipped_warmup_fails(tf, results_dir, shapes_root, tiny, monkeypatch):
    common = _yolo(results_dir, shapes_root, tiny, "framework=tensorflow")
    (clean,) = run_one(common, echo=lambda _: None).jobs
    assert clean["failure_message"] is None, clean["failure_message"]
    assert [s for s, _ in _logged_rates(clean)] == [1, 2, 3, 4]
    monkeypatch.setattr(tf_loop, "lr_factor", _with_recipe({"warmup_steps": 0}))
    (broken,) = run_one([*common, f"results_dir={results_dir}-broken"], echo=lambda _: None).jobs
    assert broken["verdict"] == "ERROR"
    assert "schedule: lr at step 1 was 0.004, the recipe's is 4e-06" in broken["failure_message"]
