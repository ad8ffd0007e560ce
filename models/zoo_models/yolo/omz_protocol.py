"""YOLO evaluation as Open Model Zoo's accuracy checker does it: the protocol that measured the
val2017 claims of yolov3/yolov4 (models/zoo_models/conf/model/yolov3.yaml, yolov4.yaml), for the tiers that choose
``test.protocol: omz_accuracy_checker``. The darknet protocol (models/zoo_models/yolo/loss.py
``postprocess``, models/zoo_models/darknet/augment.py ``ResizeForEval``) stays the default.

Restated (not copied) from openvinotoolkit/open_model_zoo at 7ef5b91f75115a5eec5a67921453d7faaff8f78b:
models/public/yolo-v3-tf/accuracy-check.yml and yolo-v4-tf/accuracy-check.yml, and under
tools/accuracy_checker/accuracy_checker/:

* preprocessing (preprocessor/resize.py ``_OpenCVResizer``): the image, as RGB in [0, 1]
  (``bgr_to_rgb``, ``normalization std 255``), stretched to the network size by ``cv2.resize``
  INTER_LINEAR: half-pixel-centred bilinear without antialiasing, no letterbox;
* decoding (adapters/yolo.py ``YoloV3Adapter`` with ``raw_output``, ``parse_output``): x, y =
  (sigmoid + cell) / cells and w, h = exp x anchor / input size, relative to the image, **without**
  darknet's ``scale_x_y``; a box is kept when its objectness exceeds ``threshold`` 0.001 and
  carries one label, the argmax of its class probabilities, scored objectness x probability;
* postprocessing, in this order: ``resize_prediction_boxes`` (relative -> original-image pixels),
  ``filter min_confidence 0.001`` (drops scores below it), ``nms`` or ``diou_nms`` with
  ``overlap 0.5`` over all boxes of the image whatever their label (postprocessor/nms.py; both with
  ``include_boundaries``: widths and heights + 1 pixel; no ``keep_top_k``: no candidate cap),
  then ``clip_boxes`` to the image;
* the images scored (annotation_converters/ms_coco.py ``_create_representations``): only those
  with at least one annotation (crowd included); val2017's images without any are not scored.

The checker's metric (metrics/coco_metrics.py ``coco_precision``, ``max_detections 100``) keeps
the 100 best detections per image and class, as COCOeval does; where it differs from pycocotools
is listed in the tiers' deviations.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torchvision.ops import nms

from replicate.errors import ConfigError
from zoo_models.yolo.loss import MAX_DETECTIONS, MAX_LOG_WH, YoloHead, split_map, top_per_class

# yolo_v3 adapter ``threshold`` (its default, and yolo-v4-tf's accuracy-check.yml): objectness above it
OBJECTNESS_THRESHOLD = 0.001
# accuracy-check.yml ``filter min_confidence``: a score below it is removed
MIN_CONFIDENCE = 0.001
# accuracy-check.yml ``nms`` / ``diou_nms`` ``overlap``: a box overlapping a kept one by more is dropped
NMS_OVERLAP = 0.5
# postprocessor/nms.py DIoUNMS.diou_nms: the distance term is raised to this power
DIOU_BETA = 0.6
# postprocessor/nms.py: include_boundaries (default True) adds this to widths and heights
BOUNDARY = 1.0


class OmzResize:
    """The checker's ``resize`` (cv2.resize INTER_LINEAR) of an RGB [0, 1] image to ``size`` x
    ``size``; ``target["resize"]`` records it as ResizeForEval does (scale x, scale y, offsets 0,
    original width, original height), and the target boxes follow the image."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        _, h, w = image.shape
        s = self.size
        if (h, w) != (s, s):
            image = F.interpolate(image[None].float(), size=(s, s), mode="bilinear", align_corners=False,
                                  antialias=False)[0]
        sx, sy = s / w, s / h
        target = {k: v for k, v in target.items() if k != "masks"}
        boxes = target["boxes"].clone()
        boxes[:, 0::2] *= sx
        boxes[:, 1::2] *= sy
        target["boxes"] = boxes
        target["resize"] = torch.tensor([sx, sy, 0.0, 0.0, w, h], dtype=torch.float32)
        return image, target


def decode(outputs: list[torch.Tensor], heads: list[YoloHead],
           input_hw: tuple[int, int]) -> list[dict[str, torch.Tensor]]:
    """The adapter's detections per image: ``boxes`` xyxy relative to the image (float64),
    ``scores``, ``labels`` (class indices), for every box whose objectness exceeds 0.001.

    Args:
        outputs: Raw maps entering each [yolo] layer, [B, A*(5+C), H, W] (darknet's channel order,
            which is the checker's after its HWB/BHW reshape: anchor-major, then the 5+C values).
        heads: The [yolo] layers (anchors in network pixels, masks, classes).
        input_hw: The network input's height and width.
    """
    per_layer = []
    for raw, head in zip(outputs, heads):
        if head.new_coords:
            raise ConfigError(f"[yolo] layer {head.index}", "new_coords=1 is not what the accuracy checker's "
                                                             "yolo_v3 adapter decodes (test.protocol)")
        p = split_map(raw.double(), head)                               # [B, A, H, W, 5+C]
        _, _, rows, cols, _ = p.shape
        ys, xs = torch.meshgrid(torch.arange(rows, device=p.device), torch.arange(cols, device=p.device),
                                indexing="ij")
        anchors = head.masked_anchors.to(p.device, torch.float64).view(1, -1, 1, 1, 2)
        # the checker's order of the exp and the divisions; no scale_x_y (its adapter has none)
        cx = (p[..., 0].sigmoid() + xs) / cols
        cy = (p[..., 1].sigmoid() + ys) / rows
        wh = p[..., 2:4].clamp(max=MAX_LOG_WH).exp() * anchors
        bw, bh = wh[..., 0] / input_hw[1], wh[..., 1] / input_hw[0]
        boxes = torch.stack((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), -1)
        # [B, H, W, A, ...]: the checker's candidate order (row, column, anchor), which decides ties
        per_layer.append((boxes.permute(0, 2, 3, 1, 4).flatten(1, 3),
                          p[..., 4:].sigmoid().permute(0, 2, 3, 1, 4).flatten(1, 3)))
    boxes_all = torch.cat([b for b, _ in per_layer], 1)
    probs_all = torch.cat([q for _, q in per_layer], 1)
    results = []
    for boxes, probs in zip(boxes_all, probs_all):
        objectness, classes = probs[:, 0], probs[:, 1:] * probs[:, :1]
        kept = (objectness > OBJECTNESS_THRESHOLD).nonzero(as_tuple=True)[0]
        scores, labels = classes[kept].max(1)        # the first of equal maxima, as np.argmax
        results.append({"boxes": boxes[kept], "scores": scores, "labels": labels})
    return results


def nms_keep(boxes: torch.Tensor, scores: torch.Tensor, overlap: float = NMS_OVERLAP) -> torch.Tensor:
    """The checker's ``NMS.nms`` (include_boundaries): indices kept, by descending score.
    Widening each box by the boundary pixel on its far side gives torchvision's IoU the checker's
    ``w + 1``, ``h + 1`` for the areas and the intersection alike."""
    widened = boxes.clone()
    widened[:, 2:] += BOUNDARY
    return nms(widened, scores, overlap)


def diou_overlap(a: torch.Tensor, b: torch.Tensor, beta: float = DIOU_BETA) -> torch.Tensor:
    """The checker's DIoU-NMS overlap of every box of ``a`` [K, 4] with every box of ``b`` [M, 4]:
    IoU (+1 boundaries) - (centre distance^2 / enclosing diagonal^2)^beta, the distance terms
    without the boundary pixel, as ``DIoUNMS.diou_nms`` computes it (symmetric in its operands, so
    its value does not depend on which box is the kept one)."""
    ax1, ay1, ax2, ay2 = (v[:, None] for v in a.unbind(1))
    bx1, by1, bx2, by2 = (v[None] for v in b.unbind(1))
    inter = ((torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1) + BOUNDARY).clamp(min=0)
             * (torch.minimum(ay2, by2) - torch.maximum(ay1, by1) + BOUNDARY).clamp(min=0))
    union = (ax2 - ax1 + BOUNDARY) * (ay2 - ay1 + BOUNDARY) + (bx2 - bx1 + BOUNDARY) * (by2 - by1 + BOUNDARY) - inter
    iou = torch.where(union != 0, inter / torch.where(union != 0, union, 1.0), 0.0)
    del inter, union
    diagonal = ((torch.maximum(ax2, bx2) - torch.minimum(ax1, bx1)) ** 2
                + (torch.maximum(ay2, by2) - torch.minimum(ay1, by1)) ** 2 + 1e-16)
    distance = ((bx2 + bx1) - (ax2 + ax1)) ** 2 / 4 + ((by2 + by1) - (ay2 + ay1)) ** 2 / 4
    return iou - (distance / diagonal) ** beta


DIOU_BLOCK = 256   # candidates resolved together: bounds the [kept, block] overlap matrix's memory


def diou_nms_keep(boxes: torch.Tensor, scores: torch.Tensor, overlap: float = NMS_OVERLAP,
                  beta: float = DIOU_BETA) -> torch.Tensor:
    """The checker's ``DIoUNMS.diou_nms`` (include_boundaries): greedy by descending score, a box
    dropped when its :func:`diou_overlap` with a kept one exceeds ``overlap``. torchvision has no
    DIoU-NMS (its distance_box_iou is IoU - d^2/c^2, without the power and the boundary pixel).

    The same greedy result, computed by blocks of the score order: a block's boxes are first
    checked against every box kept before it (one matrix), then against each other in order.
    A box is kept exactly when no higher-scored kept box overlaps it by more than ``overlap``,
    as in the checker's loop, which drops the boxes a kept one overlaps as it goes.
    """
    order = scores.argsort(descending=True)
    ranked = boxes[order]
    kept = torch.empty(0, dtype=torch.long, device=boxes.device)
    for start in range(0, len(ranked), DIOU_BLOCK):
        block = ranked[start:start + DIOU_BLOCK]
        alive = torch.ones(len(block), dtype=torch.bool, device=boxes.device)
        if kept.numel():
            alive &= ~(diou_overlap(ranked[kept], block, beta) > overlap).any(0)
        within = (diou_overlap(block, block, beta) > overlap).cpu().numpy()
        alive_np = alive.cpu().numpy()
        for i in range(len(block) - 1):   # the block's own boxes, in score order
            if alive_np[i]:
                alive_np[i + 1:] &= ~within[i, i + 1:]
        kept = torch.cat((kept, start + torch.from_numpy(alive_np).to(boxes.device).nonzero(as_tuple=True)[0]))
    return order[kept]


NMS_KINDS = {"nms": nms_keep, "diou_nms": diou_nms_keep}


def postprocess(outputs: list[torch.Tensor], heads: list[YoloHead], input_hw: tuple[int, int],
                image_sizes: list[tuple[float, float]], nms_kind: str,
                max_det: int = MAX_DETECTIONS) -> list[dict[str, torch.Tensor]]:
    """Per image: ``boxes`` xyxy in original-image pixels, ``scores``, ``labels`` (class
    indices), after the checker's resize_prediction_boxes, filter, (DIoU-)NMS and clip_boxes.

    Args:
        image_sizes: Each image's original (width, height).
        nms_kind: The checker config's NMS postprocessor, ``nms`` or ``diou_nms``.
        max_det: Detections kept per image and class (the metric's max_detections, which COCOeval
            applies the same way: fewer than it would change the metric, more cannot).
    """
    if nms_kind not in NMS_KINDS:
        raise ConfigError("test.nms", f"{nms_kind!r}: one of {', '.join(NMS_KINDS)}")
    results = []
    for det, (width, height) in zip(decode(outputs, heads, input_hw), image_sizes):
        boxes = det["boxes"] * torch.tensor([width, height, width, height], dtype=det["boxes"].dtype,
                                            device=det["boxes"].device)
        passed = det["scores"] >= MIN_CONFIDENCE
        boxes, scores, labels = boxes[passed], det["scores"][passed], det["labels"][passed]
        keep = NMS_KINDS[nms_kind](boxes, scores).to(boxes.device)
        keep = keep[top_per_class(labels[keep], max_det)]
        kept = boxes[keep]
        kept[:, 0::2] = kept[:, 0::2].clamp(0, width)
        kept[:, 1::2] = kept[:, 1::2].clamp(0, height)
        results.append({"boxes": kept, "scores": scores[keep], "labels": labels[keep]})
    return results


def original_size(target: dict) -> tuple[float, float]:
    """An eval target's original (width, height), from the record OmzResize leaves."""
    resize: Optional[torch.Tensor] = target.get("resize")
    if resize is None:
        raise ValueError("the target has no resize record: the eval dataset was not built with OmzResize")
    return float(resize[4]), float(resize[5])
