"""Recipe -> learning rate: linear scaling rule, warm-up, multistep, linear decay."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from replicate.config.schema import RecipeConfig
from replicate.runner.optim import lr_factor, scaled_lr, total_steps


def recipe(**kw):
    base = OmegaConf.structured(RecipeConfig(lr=0.02, batch_size=16, source="test"))
    return OmegaConf.merge(base, kw)


def test_linear_scaling_applied_and_recorded_when_batch_differs():
    lr, record = scaled_lr(recipe(batch_size=4, recipe_batch_size=16))
    assert lr == pytest.approx(0.005)
    assert record["applied"] and record["base_lr"] == 0.02 and record["recipe_batch_size"] == 16


def test_no_scaling_when_batch_matches():
    lr, record = scaled_lr(recipe(recipe_batch_size=16))
    assert lr == 0.02 and not record["applied"]


def test_warmup_then_multistep_in_epochs():
    r = recipe(epochs=26, milestones=[16, 22], warmup_steps=100, warmup_factor=0.001)
    steps, per_epoch = total_steps(r, train_size=1600, schedule_fraction=1.0)
    assert (steps, per_epoch) == (26 * 100, 100)
    assert lr_factor(0, steps, per_epoch, r) == pytest.approx(0.001)
    assert lr_factor(50, steps, per_epoch, r) == pytest.approx(0.5005)
    assert lr_factor(1599, steps, per_epoch, r) == 1.0
    assert lr_factor(1600, steps, per_epoch, r) == pytest.approx(0.1)
    assert lr_factor(2200, steps, per_epoch, r) == pytest.approx(0.01)


def test_linear_decay_and_short_tier_fraction():
    r = recipe(steps=200, schedule="linear_decay", decay_start=100)
    assert lr_factor(99, 200, 1.0, r) == 1.0
    assert lr_factor(150, 200, 1.0, r) == pytest.approx(0.5)
    assert total_steps(r, 10, 0.25) == (50, 1.0)
