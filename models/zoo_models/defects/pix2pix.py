"""Defects of pix2pix (models/zoo_models/pix2pix.py): the objective's weights, the pairs' direction, the init."""

from __future__ import annotations

from typing import Any, Callable

from replicate.config.selection import model_tier
from replicate.defects.patching import after_build_model, wrap
from replicate.defects.registry import register

PAPER_LAMBDA_L1 = 100.0   # the paper's lambda (eq. 4), the task's default when the recipe has none


@register("l1_weight_100x_small", ("pix2pix",), stage="training", type="hyperparameter",
          description="lambda_L1 = 1 instead of 100: the cGAN term dominates the generator's objective")
def l1_weight_100x_small(task: Any, cfg: Any) -> None:
    """lambda_L1 is left at 1, the weight every other loss term has, instead of the paper's 100
    (eq. 4): the generator's objective is almost all cGAN term, and its outputs drift from the
    target images the L1 term ties them to."""
    extra = model_tier(cfg).recipe.extra
    extra["lambda_l1"] = float(extra.get("lambda_l1", PAPER_LAMBDA_L1)) / 100


@register("direction_swapped_in_training", ("pix2pix",), stage="data", type="data pipeline",
          description="training pairs read the other way round (--direction BtoA for AtoB)")
def direction_swapped_in_training(task: Any, cfg: Any) -> None:
    """The training loader reads the pairs with the wrong ``--direction`` (the reference's
    Cityscapes pairs need BtoA), while the test script hard-codes the right one: the generator
    learns photo -> label and is scored on label -> photo."""

    def step(original: Callable[..., Any], model: Any, batch: Any, *args: Any) -> Any:
        labels, photos = batch
        return original(model, (photos, labels), *args)

    wrap(task, "training_step", step)


@register("gan_default_init", ("pix2pix",), stage="model", type="weights/checkpoint",
          description="networks keep PyTorch's default init instead of the reference's N(0, 0.02)")
def gan_default_init(task: Any, cfg: Any) -> None:
    """``init_weights`` (conv weights N(0, 0.02), batch-norm gains N(1, 0.02)) is never called,
    as the reference's ``init_net`` does for both networks: they start from PyTorch's default
    Kaiming-uniform init, which the DCGAN-style recipe was not tuned for."""

    def default_init(model: Any) -> None:
        for module in model.modules():
            if module is not model and hasattr(module, "reset_parameters"):
                module.reset_parameters()

    after_build_model(task, default_init)
