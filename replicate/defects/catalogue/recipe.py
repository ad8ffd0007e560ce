"""Defects of the training recipe and the job's setup that any model can have."""

from __future__ import annotations

from typing import Any

from replicate.defects.patching import tier_of
from replicate.defects.registry import EVERY_IMPLEMENTATION, register

SGD_RECIPES = ("faster_rcnn", "mask_rcnn", "retinanet")   # smoke recipes with optimizer: sgd


@register("lr_10x", ("yolov4", EVERY_IMPLEMENTATION), stage="training", type="hyperparameter",
          description="learning rate 10x the recipe's")
def lr_10x(task: Any, cfg: Any) -> None:
    """The learning rate is ten times the recipe's: an exponent typed wrong (4e-2 for 4e-3), or a
    rate copied from a recipe with ten times the batch without the linear scaling rule."""
    recipe = tier_of(cfg).recipe
    recipe.lr = float(recipe.lr) * 10


@register("sgd_momentum_zero", SGD_RECIPES, stage="training", type="hyperparameter",
          description="SGD without momentum (torch's default 0) instead of the recipe's 0.9")
def sgd_momentum_zero(task: Any, cfg: Any) -> None:
    """The optimizer is built as ``torch.optim.SGD(params, lr)``: momentum is left at torch's
    default 0 where the recipe (and Detectron's config it came from) says 0.9."""
    tier_of(cfg).recipe.momentum = 0.0


@register("shuffled_labels", ("centernet", EVERY_IMPLEMENTATION), stage="data", type="data pipeline",
          description="training images paired with another image's labels")
def shuffled_labels(task: Any, cfg: Any) -> None:
    """Images and annotations are indexed in two different orders (e.g. one list sorted by file
    name, the other by image id), so every training image is trained on another one's labels.
    The same permutation as the ``shuffle_labels`` negative control."""
    task.ctx.shuffle_labels = True


@register("eval_on_train_split", ("mask_rcnn", EVERY_IMPLEMENTATION), stage="evaluation",
          type="evaluation",
          description="evaluated on the training split instead of the validation split")
def eval_on_train_split(task: Any, cfg: Any) -> None:
    """The evaluation reads the split the model was trained on (a default ``split='train'`` left
    in the evaluation script): the metric measures memorisation, not generalisation."""
    tier = tier_of(cfg)
    tier.eval_split = tier.train_split
