"""Defects of the training recipe and the job's setup that any model can have, in any zoo.

Each applies to every registered implementation; the selftest injects it first into the one a zoo
asks for (``registry.lead``; this project's zoo: models/zoo_models/defects/__init__.py), else the
first registered."""

from __future__ import annotations

from typing import Any

from replicate.config.selection import model_tier
from replicate.defects.registry import EVERY_IMPLEMENTATION, register


@register("lr_10x", (EVERY_IMPLEMENTATION,), stage="training", type="hyperparameter",
          description="learning rate 10x the recipe's")
def lr_10x(task: Any, cfg: Any) -> None:
    """The learning rate is ten times the recipe's: an exponent typed wrong (4e-2 for 4e-3), or a
    rate copied from a recipe with ten times the batch without the linear scaling rule."""
    recipe = model_tier(cfg).recipe
    recipe.lr = float(recipe.lr) * 10


@register("shuffled_labels", (EVERY_IMPLEMENTATION,), stage="data", type="data pipeline",
          description="training images paired with another image's labels")
def shuffled_labels(task: Any, cfg: Any) -> None:
    """Images and annotations are indexed in two different orders (e.g. one list sorted by file
    name, the other by image id), so every training image is trained on another one's labels.
    The same permutation as the ``shuffle_labels`` negative control."""
    task.ctx.shuffle_labels = True


@register("eval_on_train_split", (EVERY_IMPLEMENTATION,), stage="evaluation",
          type="evaluation",
          description="evaluated on the training split instead of the validation split")
def eval_on_train_split(task: Any, cfg: Any) -> None:
    """The evaluation reads the split the model was trained on (a default ``split='train'`` left
    in the evaluation script): the metric measures memorisation, not generalisation."""
    tier = model_tier(cfg)
    tier.eval_split = tier.train_split
