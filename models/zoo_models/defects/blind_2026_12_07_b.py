"""More defects written on 2026-12-07 before the benchmark's checks were looked at with them in
mind (``written_before_checks``): CenterNet's loss weights and detections per image, the
TensorFlow YOLO's batch norm and channels-last images, an evaluation colour order and a warm-up."""

from __future__ import annotations

from typing import Any, Callable

from replicate.defects.patching import MappedItems, after_build_dataset, after_build_model, wrap
from replicate.defects.registry import register
from zoo_models.defects.blind_2026_12_07 import BLIND

DEMO_TOP_K = 10   # detections a visualisation keeps per image, where the COCO evaluation keeps 100


@register("centernet_wh_off_weights_swapped", ("centernet",), stage="training", type="hyperparameter",
          description="the size and offset loss weights passed in each other's place (wh 1, offset 0.1)",
          written_before_checks=BLIND)
def centernet_wh_off_weights_swapped(task: Any, cfg: Any) -> None:
    """``wh_weight=0.1`` and ``off_weight=1`` were given in each other's place (both are
    regression L1 losses, listed next to each other in the reference's opts): the size loss,
    in input pixels and large, now dominates the focal loss, and the sub-cell offset is
    learnt ten times more weakly. Written on 2026-12-07 before the checks were looked at with it
    in mind."""

    def settings(original: Callable[..., Any]) -> dict[str, float]:
        weights = dict(original())
        weights["wh_weight"], weights["off_weight"] = weights["off_weight"], weights["wh_weight"]
        return weights

    wrap(task, "loss_settings", settings)


@register("centernet_top_k_from_demo", ("centernet",), stage="evaluation", type="evaluation",
          description="10 detections kept per image (a demo's setting) instead of the reference's K=100",
          written_before_checks=BLIND)
def centernet_top_k_from_demo(task: Any, cfg: Any) -> None:
    """The decoded peaks are cut to the 10 best per image, as a demo that draws them does,
    instead of the reference's ``--K 100`` the COCO evaluation is run with: every object
    beyond the tenth best-scored peak is missed, and the recall tail the AP averages over is
    gone. Written on 2026-12-07 before the checks were looked at with it in mind."""

    def few(original: Callable[..., Any], out: Any, batch: Any) -> list[dict]:
        return [{k: v[:DEMO_TOP_K] if k in ("boxes", "scores", "labels") else v for k, v in d.items()}
                for d in original(out, batch)]

    wrap(task, "detections", few)


@register("keras_bn_momentum_torch_sense", ("yolov3/tensorflow",), stage="model",
          type="model architecture/API misuse",
          description="Keras batch norm given torch's momentum (0.1, the new value's weight) where Keras "
                      "wants the old value's (0.9)",
          written_before_checks=BLIND)
def keras_bn_momentum_torch_sense(task: Any, cfg: Any) -> None:
    """The port passes the cfg's batch-norm momentum to ``keras.layers.BatchNormalization`` as
    torch's ``BatchNorm2d`` takes it, but Keras' momentum weighs the old moving value: the
    moving statistics keep 10% of their history and follow the last few batches, so evaluation
    normalises with a noisy estimate. Written on 2026-12-07 before the checks were looked at
    with it in mind."""

    def torch_sense(model: Any) -> None:
        for _, block in model.conv_blocks():
            if block.bn is not None:
                block.bn.momentum = 1.0 - block.bn.momentum

    after_build_model(task, torch_sense)


@register("channels_last_transposed", ("yolov3/tensorflow",), stage="data", type="data pipeline",
          description="NCHW images made channels-last with permute(0, 3, 2, 1): every image is transposed",
          written_before_checks=BLIND)
def channels_last_transposed(task: Any, cfg: Any) -> None:
    """The batches are converted to Keras' channels-last layout with ``(0, 3, 2, 1)`` instead
    of ``(0, 2, 3, 1)``: the shape is right for square inputs, so nothing fails, but each image
    is mirrored about its diagonal while its boxes are not (training and evaluation alike).
    Written on 2026-12-07 before the checks were looked at with it in mind."""
    import numpy as np

    def collate(original: Callable[..., Any], items: list) -> Any:
        arrays, targets = original(items)
        return {**arrays, "images": np.ascontiguousarray(arrays["images"].transpose(0, 2, 1, 3))}, targets

    wrap(task, "collate", collate)


def _bgr(item: tuple[Any, dict]) -> tuple[Any, dict]:
    image, target = item
    return image.flip(0), target


@register("bgr_at_evaluation", ("yolov4",), stage="evaluation", type="data pipeline",
          description="evaluation images in BGR order (an OpenCV loader), training images in RGB",
          written_before_checks=BLIND)
def bgr_at_evaluation(task: Any, cfg: Any) -> None:
    """The evaluation script reads its images with OpenCV and forgets the BGR-to-RGB
    conversion the training loader (PIL) never needed: the network is tested on images with
    red and blue swapped. Written on 2026-12-07 before the checks were looked at with it in
    mind."""

    def bgr(dataset: Any, train: bool) -> Any:
        return dataset if train else MappedItems(dataset, _bgr)

    after_build_dataset(task, bgr)


def floor_warmup_factor(step: int, recipe: Any) -> float:
    """The warm-up multiplier with ``alpha = step // warmup_steps`` (0 throughout the warm-up)."""
    alpha = step // recipe.warmup_steps
    power = recipe.get("warmup_power")
    return alpha ** power if power is not None else recipe.warmup_factor * (1 - alpha) + alpha


def true_warmup_factor(step: int, recipe: Any) -> float:
    alpha = step / recipe.warmup_steps
    power = recipe.get("warmup_power")
    return alpha ** power if power is not None else recipe.warmup_factor * (1 - alpha) + alpha


@register("warmup_integer_division", ("mask_rcnn", "faster_rcnn", "retinanet"), stage="training",
          type="training procedure",
          description="warm-up progress computed with integer division: the rate stays at warmup_factor "
                      "x lr for the whole warm-up, then jumps to lr",
          written_before_checks=BLIND)
def warmup_integer_division(task: Any, cfg: Any) -> None:
    """The warm-up's progress is ``step // warmup_steps`` (Python 2 habit in a port of
    Detectron's ``get_warmup_factor``), which is 0 until the warm-up ends: the rate sits at
    ``warmup_factor`` x lr (1/1000 of it) for the whole warm-up and then jumps to the full rate
    in one step. Applied where the rate reaches the update: a pre-hook of each optimizer's
    ``step`` rescales its groups' scheduled rate (which the loop's scheduler then resets). Written on 2026-12-07
    before the checks were looked at with it in mind."""

    def configure(original: Callable[..., Any], model: Any, recipe: Any, lr: float, build: Any) -> dict[str, Any]:
        optimizers = original(model, recipe, lr, build)
        for optimizer in optimizers.values():
            optimizer.register_step_pre_hook(_floored_warmup(recipe))
        return optimizers

    wrap(task, "configure_optimizers", configure)


def _floored_warmup(recipe: Any) -> Callable[..., None]:
    """A step pre-hook (one per optimizer, counting its own updates) that rescales each group's
    scheduled rate from the true warm-up multiplier to the floored one."""
    updates = [0]

    def hook(optimizer: Any, args: Any, kwargs: Any) -> None:
        n = updates[0]
        updates[0] += 1
        if 0 < n < recipe.warmup_steps:
            ratio = floor_warmup_factor(n, recipe) / true_warmup_factor(n, recipe)
            for group in optimizer.param_groups:
                group["lr"] *= ratio

    return hook
