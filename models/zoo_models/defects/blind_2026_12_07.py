"""Defects written on 2026-12-07 before the benchmark's checks were looked at with them in mind
(``written_before_checks``): post-processing settings, target assignment and GAN conditioning."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from replicate.defects.patching import after_build_model, wrap
from replicate.defects.registry import register

BLIND = "2026-12-07"



@register("score_thresh_from_demo", ("faster_rcnn",), stage="evaluation", type="evaluation",
          description="box score threshold 0.7 (a visualisation script's) instead of 0.05 at evaluation",
          written_before_checks=BLIND)
def score_thresh_from_demo(task: Any, cfg: Any) -> None:
    """The detector is built with ``box_score_thresh=0.7`` copied from a demo that draws
    detections, instead of torchvision's 0.05 for COCO evaluation: the low-confidence
    detections the AP's recall tail needs are thrown away. Written on 2026-12-07 before the
    checks were looked at with it in mind."""

    def demo_threshold(model: Any) -> None:
        model.roi_heads.score_thresh = 0.7

    after_build_model(task, demo_threshold)


@register("box_head_matcher_rpn_thresholds", ("faster_rcnn", "mask_rcnn"), stage="training",
          type="model architecture/API misuse",
          description="the box head's proposal matcher takes the RPN's IoU thresholds (0.7/0.3) instead of 0.5/0.5",
          written_before_checks=BLIND)
def box_head_matcher_rpn_thresholds(task: Any, cfg: Any) -> None:
    """``box_fg_iou_thresh`` / ``box_bg_iou_thresh`` were passed the RPN's values (0.7 and 0.3):
    proposals overlapping an object by 0.5 to 0.7 are neither positive nor negative, so the box
    head trains on far fewer positives than Fast R-CNN's 0.5 rule gives it. Written on
    2026-12-07 before the checks were looked at with it in mind."""
    from torchvision.models.detection import _utils as det_utils

    def rpn_thresholds(model: Any) -> None:
        model.roi_heads.proposal_matcher = det_utils.Matcher(0.7, 0.3, allow_low_quality_matches=False)

    after_build_model(task, rpn_thresholds)


@register("retinanet_score_nms_swapped", ("retinanet",), stage="evaluation", type="model architecture/API misuse",
          description="score_thresh and nms_thresh passed in each other's place (0.5 score cut, NMS at IoU 0.05)",
          written_before_checks=BLIND)
def retinanet_score_nms_swapped(task: Any, cfg: Any) -> None:
    """RetinaNet's ``score_thresh=0.05`` and ``nms_thresh=0.5`` were given in each other's place
    (positionally, in the order Detectron's config lists them): only detections above 0.5 are
    kept, and NMS suppresses every box overlapping a better one by more than 0.05. Written on
    2026-12-07 before the checks were looked at with it in mind."""

    def swapped(model: Any) -> None:
        model.score_thresh, model.nms_thresh = model.nms_thresh, model.score_thresh

    after_build_model(task, swapped)


@register("mask_binarised_as_logits", ("mask_rcnn",), stage="evaluation", type="evaluation",
          description="mask probabilities binarised at 0 (as if logits) instead of 0.5: masks fill their boxes",
          written_before_checks=BLIND)
def mask_binarised_as_logits(task: Any, cfg: Any) -> None:
    """The pasted masks are thresholded at 0, as Detectron's mask logits are, while torchvision
    returns sigmoid probabilities: every pixel of the box the mask was pasted into counts as the
    object. Written on 2026-12-07 before the checks were looked at with it in mind."""

    def predict(original: Callable[..., Any], model: Any, batch: Any) -> list[dict]:
        return [{**p, "masks": p["masks"] > 0} if "masks" in p else p for p in original(model, batch)]

    wrap(task, "predict", predict)


@register("ignore_thresh_from_truth_thresh", ("yolov3", "yolov4"), stage="training", type="training procedure",
          description="each [yolo] layer's ignore_thresh read from truth_thresh (1): no prediction is ignored",
          written_before_checks=BLIND)
def ignore_thresh_from_truth_thresh(task: Any, cfg: Any) -> None:
    """The cfg parser took ``truth_thresh=1`` (the next line of each [yolo] block) for
    ``ignore_thresh=0.7``: predictions that already overlap an object well are pushed to
    objectness 0 instead of being left alone. Written on 2026-12-07 before the checks were
    looked at with it in mind."""

    def never_ignore(model: Any) -> None:
        model.heads = [dataclasses.replace(h, ignore_thresh=1.0) for h in model.heads]

    after_build_model(task, never_ignore)


@register("discriminator_unconditioned", ("pix2pix",), stage="model", type="model architecture/API misuse",
          description="the discriminator's input-image channels are blank: it judges outputs without the input",
          # missed by its blind selftest (L1 0.04445, in band); the input rule
          # (replicate/runner/input_dependence.py) was written after, with it in mind
          written_before_checks=BLIND, check_fitted_after="2026-12-07")
def discriminator_unconditioned(task: Any, cfg: Any) -> None:
    """The port feeds the PatchGAN the output image only, with zeros where the conditioning
    input should be concatenated (the discriminator keeps its 6-channel first layer): an
    unconditional GAN, which the paper shows pairs outputs poorly with inputs (Table 1). Written
    on 2026-12-07 before the checks were looked at with it in mind."""
    import torch

    def blank_condition(model: Any) -> None:
        channels = model.discriminator.model[0].in_channels // 2

        def forward(original: Callable[..., Any], x: Any) -> Any:
            return original(torch.cat([torch.zeros_like(x[:, :channels]), x[:, channels:]], 1))

        wrap(model.discriminator, "forward", forward)

    after_build_model(task, blank_condition)
