"""Post-processing and target-assignment settings held to the reference's code.

torchvision's detectors are the references' own classes (references/detection builds them with
their constructors' defaults and evaluates them so), so a job's detector must hold those
defaults: a score threshold, an NMS overlap, a detection cap or an anchor-matching threshold
changed anywhere on the way (a builder's keyword, an edited attribute) moves the metric without
any crash. Each setting is read from the built model and compared with the default in the
constructor's signature (the reference's code, read at run time; not a copy of it). A variant
that changes one on purpose says so in ``arch.detector_kwargs``: recorded as a deviation.
"""

from __future__ import annotations

import inspect
import operator
from typing import Any

# constructor keyword -> where the built model keeps it (torchvision 0.29's attribute paths)
TWO_STAGE = {
    "rpn_nms_thresh": "rpn.nms_thresh", "rpn_score_thresh": "rpn.score_thresh",
    "rpn_fg_iou_thresh": "rpn.proposal_matcher.high_threshold",
    "rpn_bg_iou_thresh": "rpn.proposal_matcher.low_threshold",
    "box_score_thresh": "roi_heads.score_thresh", "box_nms_thresh": "roi_heads.nms_thresh",
    "box_detections_per_img": "roi_heads.detections_per_img",
    "box_fg_iou_thresh": "roi_heads.proposal_matcher.high_threshold",
    "box_bg_iou_thresh": "roi_heads.proposal_matcher.low_threshold",
}
ONE_STAGE = {
    "score_thresh": "score_thresh", "nms_thresh": "nms_thresh", "detections_per_img": "detections_per_img",
    "topk_candidates": "topk_candidates", "fg_iou_thresh": "proposal_matcher.high_threshold",
    "bg_iou_thresh": "proposal_matcher.low_threshold",
}


def setting_paths(detector: type) -> dict[str, str]:
    from torchvision.models.detection import FasterRCNN, RetinaNet

    if issubclass(detector, FasterRCNN):   # MaskRCNN included
        return TWO_STAGE
    if issubclass(detector, RetinaNet):
        return ONE_STAGE
    return {}


def compare_with_reference(model: Any, detector: type, declared: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """(settings that differ from the reference without being declared, declared deviations).

    Args:
        model: the built detector.
        detector: its torchvision class, whose constructor's defaults are the reference's settings.
        declared: the variant's ``detector_kwargs`` (settings it changes on purpose).
    """
    defaults = inspect.signature(detector).parameters   # the constructor's, read from the class
    problems, deviations = [], {}
    for keyword, path in setting_paths(detector).items():
        reference = defaults[keyword].default
        held = operator.attrgetter(path)(model)
        if keyword in declared:
            if held != declared[keyword]:
                problems.append(f"{path} is {held}, the variant's detector_kwargs.{keyword} says {declared[keyword]}")
            elif held != reference:
                deviations[keyword] = {"value": held, "reference": reference}
        elif held != reference:
            problems.append(f"{path} is {held}, torchvision's {detector.__name__} (the reference's model) uses "
                            f"{reference}")
    return problems, deviations
