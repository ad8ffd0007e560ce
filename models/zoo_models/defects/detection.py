"""Defects of the torchvision detectors (Faster R-CNN, Mask R-CNN, RetinaNet) and of the COCO
detection pipeline they share with CenterNet and the YOLOs."""

from __future__ import annotations

from typing import Any, Callable

from replicate.defects.patching import after_build_dataset, after_build_model, wrap
from replicate.defects.registry import led_by, register

COCO_DETECTORS = ("faster_rcnn", "mask_rcnn", "retinanet", "centernet", "yolov3", "yolov3/tensorflow", "yolov4")
FLIPPING_DETECTORS = ("faster_rcnn", "mask_rcnn", "retinanet", "centernet")  # RandomHorizontalFlip in training


@register("box_regression_loss_dropped", ("faster_rcnn", "mask_rcnn"), stage="training", type="training procedure",
          description="the second stage's box regression loss is left out of the total")
def box_regression_loss_dropped(task: Any, cfg: Any) -> None:
    """The total loss sums the loss dict by the keys the reengineer expected, and torchvision's
    ``loss_box_reg`` (the box head's regression) is not among them: the box head never learns
    to refine the proposals."""

    def drop_box_loss(model: Any) -> None:
        def forward(original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            if model.training and isinstance(out, dict):
                out.pop("loss_box_reg", None)
            return out

        wrap(model, "forward", forward)

    after_build_model(task, drop_box_loss)


class ImageOnlyFlip:
    """A horizontal flip of the image that leaves its boxes and masks where they were; the same
    random draws as the flip it replaces."""

    def __init__(self, flip: Any):
        self.flip = flip
        self.random = flip.random   # the same augmentation stream, so it is checkpointed as well

    def __call__(self, image: Any, target: dict) -> tuple[Any, dict]:
        import torch

        if torch.rand((), generator=self.random.get() if self.random else None).item() >= self.flip.p:
            return image, target
        return image.flip(-1), target


@register("flip_image_not_boxes", FLIPPING_DETECTORS, stage="data", type="data pipeline",
          description="training flip mirrors the image but not its boxes")
def flip_image_not_boxes(task: Any, cfg: Any) -> None:
    """The horizontal-flip augmentation was written as an image transform (torchvision's
    ``transforms.RandomHorizontalFlip``), which knows nothing of the boxes: half the training
    images show their objects mirrored away from their labels."""

    def image_only(dataset: Any, train: bool) -> Any:
        if train and dataset.transforms is not None:
            dataset.transforms = ImageOnlyFlip(dataset.transforms)
        return dataset

    after_build_dataset(task, image_only)


@register("flip_at_evaluation", led_by("mask_rcnn", FLIPPING_DETECTORS), stage="evaluation",
          type="data pipeline",
          description="the training flip augmentation is left on for the evaluation images")
def flip_at_evaluation(task: Any, cfg: Any) -> None:
    """The validation set is built with the training transforms (one ``transforms=`` for both
    splits): half the evaluation images are mirrored, and their detections are scored against
    the annotation file's unmirrored boxes."""
    from replicate.data.coco_dataset import RandomHorizontalFlip

    def flipped(dataset: Any, train: bool) -> Any:
        if not train:
            dataset.transforms = RandomHorizontalFlip(0.5, generator=task.ctx.seed)
        return dataset

    after_build_dataset(task, flipped)


@register("cls_prior_init_missing", ("retinanet",), stage="model", type="weights/checkpoint",
          description="classification head bias starts at 0 instead of the prior -log((1-pi)/pi)")
def cls_prior_init_missing(task: Any, cfg: Any) -> None:
    """The classification head is initialised like every other conv (bias 0) instead of with the
    paper's prior probability pi = 0.01 (RetinaNet Sec. 4.1): every anchor starts at p = 0.5 and
    the background's focal loss swamps the first steps."""
    import torch

    def zero_prior(model: Any) -> None:
        with torch.no_grad():
            model.head.classification_head.cls_logits.bias.zero_()

    after_build_model(task, zero_prior)


@register("optimizer_heads_only", ("retinanet",), stage="training", type="training procedure",
          description="the optimizer updates the detection heads only; the backbone stays at its init")
def optimizer_heads_only(task: Any, cfg: Any) -> None:
    """The optimizer is built from ``model.head.parameters()``, as in a fine-tuning script for a
    pre-trained backbone, while this backbone starts from scratch: it never trains."""

    def heads(original: Callable[..., Any], model: Any) -> list:
        return [p for p in model.head.parameters() if p.requires_grad]

    wrap(task, "parameter_groups", heads)


def _xyxy_as_xywh(predictions: list[dict]) -> list[dict]:
    from torchvision.ops import box_convert

    return [{**p, "boxes": box_convert(p["boxes"], "xyxy", "xywh")} for p in predictions]


@register("coco_boxes_xywh_twice", led_by("retinanet", COCO_DETECTORS), stage="evaluation",
          type="evaluation",
          description="predicted boxes converted to COCO's xywh before an evaluator that converts them again")
def coco_boxes_xywh_twice(task: Any, cfg: Any) -> None:
    """The predictions are converted to COCO's (x, y, w, h) before they reach an evaluator that
    expects (x1, y1, x2, y2) and converts them itself: every box is scored with a width of
    w - x and a height of h - y."""

    def evaluator(original: Callable[..., Any], split: str) -> Any:
        built = original(split)
        wrap(built, "update", lambda update, predictions: update(_xyxy_as_xywh(predictions)))
        return built

    wrap(task, "build_evaluator", evaluator)
