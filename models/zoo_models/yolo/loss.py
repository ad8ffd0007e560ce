"""YOLO [yolo]-layer loss, box decoding and NMS (YOLOv3 and YOLOv4 semantics).

Papers: Redmon & Farhadi, "YOLOv3: An Incremental Improvement", arXiv:1804.02767;
Bochkovskiy et al., "YOLOv4: Optimal Speed and Accuracy of Object Detection", arXiv:2004.10934.
Reference implementations: pjreddie/darknet ``src/yolo_layer.c`` (public domain / YOLO licence)
and AlexeyAB/darknet ``src/yolo_layer.c`` (YOLO licence). Re-implemented, not copied.

Darknet writes gradients ("deltas") directly; the losses here are chosen so that their gradients
equal those deltas (divided by the batch size, as darknet divides its update by the batch):

* objectness and classes: ``target - sigmoid(z)`` = gradient of BCE-with-logits, objectness times
  ``obj_normalizer``; classes carry no ``cls_normalizer`` (AlexeyAB applies it only together with
  ``counters_per_class``, which is refused here); label smoothing as darknet's
  ``y (1 - eps) + eps / 2``;
* x, y with ``iou_loss=mse``: ``scale * (t - sigmoid(z))`` = ``scale`` x BCE-with-logits gradient,
  ``scale = 2 - w*h`` (pjreddie); w, h: ``scale * (t - z)`` = gradient of ``scale * (t - z)^2 / 2``;
* ``iou_loss=ciou/diou/giou/iou`` (AlexeyAB): no autograd through the decoding. The loss value is
  ``iou_normalizer`` x (1 - IoU variant); its backward (iou_deltas.DarknetBoxLoss) returns
  ``delta_yolo_box``'s deltas on the raw outputs: ``dx_box_iou`` on x, y, times ``exp(t)`` on w, h,
  times ``iou_normalizer``, each clipped to ``max_delta`` (darknet clips no other delta); with
  ``iou_thresh`` < 1 a cell's summed box deltas are divided by its number of positive class
  deltas (``averages_yolo_deltas``), and a cell's class targets are the union of its truths';
* a prediction whose best IoU with any ground truth exceeds ``ignore_thresh`` gets no
  objectness gradient; each truth is assigned to its best anchor over all anchors (and, with
  ``iou_thresh`` < 1, to every anchor above it), in the cell holding its centre, if that anchor is
  in this layer's ``mask``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.ops import batched_nms, box_convert, box_iou

from replicate.errors import ConfigError
from zoo_models.darknet.cfg_parser import YOLO_DEFAULTS, DarknetGraph, Layer
from zoo_models.yolo.iou_deltas import DarknetBoxLoss

# Detection thresholds for mAP, as AlexeyAB detector.c validate_detector_map uses them.
MAP_CONF_THRESH = 0.005
MAP_NMS_IOU = 0.45
# COCOeval keeps at most 100 detections per image *and category* (maxDets applies in each
# evaluateImg call, one per image and category): more cannot change the metric, fewer can, so
# the cap is per class. Darknet itself writes every box above the threshold.
MAX_DETECTIONS = 100
PRE_NMS_TOPK = 1000   # cost bound for untrained models whose every score passes 0.005
MAX_LOG_WH = 8.0      # exp() bound for decoded w/h: keeps an untrained head's boxes finite


@dataclass
class YoloHead:
    """What the loss and the decoder need from one [yolo] layer (anchors in input pixels)."""

    index: int
    anchors: torch.Tensor          # [num, 2]: every anchor of the layer (matching uses all)
    mask: list[int]
    classes: int
    ignore_thresh: float
    iou_thresh: float
    scale_x_y: float
    iou_loss: str
    iou_normalizer: float
    obj_normalizer: float
    cls_normalizer: float          # parsed; unused: darknet applies it only with counters_per_class
    label_smooth_eps: float
    max_delta: float               # clips the IoU box deltas only, as darknet
    new_coords: bool

    @property
    def masked_anchors(self) -> torch.Tensor:
        return self.anchors[self.mask]


def _unsupported(layer: Layer) -> None:
    """Options darknet honours that this loss does not: fail rather than train differently."""
    checks = {"truth_thresh": lambda v: v < 1, "focal_loss": bool, "objectness_smooth": bool,
              "counters_per_class": bool, "nms_kind": lambda v: v not in ("default", "greedynms"),
              "iou_thresh_kind": lambda v: v != "iou"}
    for key, bad in checks.items():
        if key in layer.options and bad(layer.options[key]):
            raise ConfigError(layer.where(), f"[yolo] {key}={layer.options[key]} is parsed but not "
                                             "implemented by models/zoo_models/yolo/loss.py")


def heads_from_graph(graph: DarknetGraph, input_size: int, scale_anchors: bool) -> list[YoloHead]:
    """One YoloHead per [yolo] layer.

    Args:
        graph: The parsed cfg.
        input_size: Square network input of this run.
        scale_anchors: Rescale the cfg's anchors (pixels at the cfg's width/height) to
            ``input_size``. Darknet itself keeps them in pixels when the resolution changes, which
            released weights expect; training from scratch at another size wants them scaled.
    """
    heads = []
    for layer in graph.yolo_layers:
        _unsupported(layer)
        opts = {**YOLO_DEFAULTS, **layer.options}
        num = int(opts["num"])
        anchors = torch.tensor(opts["anchors"][: 2 * num], dtype=torch.float32).view(num, 2)
        if scale_anchors:
            anchors = anchors * torch.tensor([input_size / graph.width, input_size / graph.height])
        # iou_normalizer: AlexeyAB's default 0.75 belongs to its IoU losses; pjreddie's mse has none
        default_norm = 1.0 if opts["iou_loss"] == "mse" else YOLO_DEFAULTS["iou_normalizer"]
        heads.append(YoloHead(
            index=layer.index, anchors=anchors, mask=list(opts.get("mask", range(num))),
            classes=int(opts["classes"]), ignore_thresh=float(opts["ignore_thresh"]),
            iou_thresh=float(opts["iou_thresh"]), scale_x_y=float(opts["scale_x_y"]),
            iou_loss=str(opts["iou_loss"]), iou_normalizer=float(layer.get("iou_normalizer", default_norm)),
            obj_normalizer=float(opts["obj_normalizer"]), cls_normalizer=float(opts["cls_normalizer"]),
            label_smooth_eps=float(opts["label_smooth_eps"]), max_delta=float(opts["max_delta"]),
            new_coords=bool(opts["new_coords"])))
    return heads


# ------------------------------------------------------------------------------ decoding
def split_map(raw: torch.Tensor, head: YoloHead) -> torch.Tensor:
    """[B, A*(5+C), H, W] -> [B, A, H, W, 5+C]."""
    b, _, h, w = raw.shape
    return raw.view(b, len(head.mask), head.classes + 5, h, w).permute(0, 1, 3, 4, 2)


def decode_xywh(p: torch.Tensor, head: YoloHead, input_hw: tuple[int, int]) -> torch.Tensor:
    """Boxes (cx, cy, w, h) in input pixels from a split map [B, A, H, W, 5+C]."""
    _, _, h, w, _ = p.shape
    stride = torch.tensor([input_hw[1] / w, input_hw[0] / h], device=p.device, dtype=p.dtype)
    ys, xs = torch.meshgrid(torch.arange(h, device=p.device), torch.arange(w, device=p.device), indexing="ij")
    grid = torch.stack((xs, ys), -1).to(p.dtype)                      # [H, W, 2]
    anchors = head.masked_anchors.to(p.device, p.dtype).view(1, -1, 1, 1, 2)
    s = head.scale_x_y
    if head.new_coords:  # the conv already applied logistic: xy = s*x - (s-1)/2, wh = 4 x^2 anchor
        xy, wh = p[..., :2], 4 * p[..., 2:4] ** 2 * anchors
    else:
        xy, wh = p[..., :2].sigmoid(), p[..., 2:4].clamp(max=MAX_LOG_WH).exp() * anchors
    xy = (xy * s - (s - 1) / 2 + grid) * stride
    return torch.cat((xy, wh), -1)


def _probabilities(p: torch.Tensor, head: YoloHead) -> torch.Tensor:
    return p[..., 4:] if head.new_coords else p[..., 4:].sigmoid()


def top_per_class(labels: torch.Tensor, most: int) -> torch.Tensor:
    """Positions of ``labels`` (in descending score order) that are among the first ``most`` of
    their class, in their order: COCOeval's per-image-and-category maxDets."""
    keep = torch.zeros(len(labels), dtype=torch.bool, device=labels.device)
    for label in labels.unique():
        keep[(labels == label).nonzero(as_tuple=True)[0][:most]] = True
    return keep.nonzero(as_tuple=True)[0]


def postprocess(outputs: list[torch.Tensor], heads: list[YoloHead], input_hw: tuple[int, int],
                conf_thresh: float = MAP_CONF_THRESH, nms_iou: float = MAP_NMS_IOU,
                max_det: int = MAX_DETECTIONS) -> list[dict[str, torch.Tensor]]:
    """Per image: ``boxes`` xyxy in input pixels, ``scores``, ``labels`` (class indices).

    Darknet scores a box per class as objectness x class probability and keeps every class above
    the threshold (multi-label), then runs per-class greedy NMS (torchvision batched_nms).
    """
    boxes, probs = [], []
    for raw, head in zip(outputs, heads):
        p = split_map(raw.float(), head)  # fp16 (AMP) would overflow in exp() for large anchors
        boxes.append(decode_xywh(p, head, input_hw).flatten(1, 3))
        probs.append(_probabilities(p, head).flatten(1, 3))
    boxes_all = box_convert(torch.cat(boxes, 1), "cxcywh", "xyxy")
    probs_all = torch.cat(probs, 1)
    results = []
    for xyxy, pr in zip(boxes_all, probs_all):
        scores = pr[:, :1] * pr[:, 1:]                                  # [N, C]
        idx, cls = (scores > conf_thresh).nonzero(as_tuple=True)
        sc = scores[idx, cls]
        if sc.numel() > PRE_NMS_TOPK:
            sc, order = sc.topk(PRE_NMS_TOPK)
            idx, cls = idx[order], cls[order]
        bx = xyxy[idx]
        # NMS on the boxes as predicted, as darknet's do_nms_sort; clipped only afterwards (darknet
        # clips to the image when it writes them, print_cocos)
        keep = batched_nms(bx.float(), sc.float(), cls, nms_iou)
        keep = keep[top_per_class(cls[keep], max_det)]
        kept = bx[keep]
        kept[:, 0::2] = kept[:, 0::2].clamp(0, input_hw[1])
        kept[:, 1::2] = kept[:, 1::2].clamp(0, input_hw[0])
        results.append({"boxes": kept, "scores": sc[keep], "labels": cls[keep]})
    return results


# ---------------------------------------------------------------------------------- loss
def _wh_iou(wh_a: torch.Tensor, wh_b: torch.Tensor) -> torch.Tensor:
    """IoU of boxes sharing a centre: [N, 2] x [M, 2] -> [N, M] (darknet's anchor matching)."""
    inter = torch.min(wh_a[:, None], wh_b[None]).prod(-1)
    return inter / (wh_a.prod(-1)[:, None] + wh_b.prod(-1)[None] - inter)


def _ignore_mask(pred_xyxy: torch.Tensor, truths: list[torch.Tensor], thresh: float) -> torch.Tensor:
    """True where a prediction's best IoU with its image's truths exceeds ``thresh``."""
    ignore = torch.zeros(pred_xyxy.shape[:-1], dtype=torch.bool, device=pred_xyxy.device)
    for b, gt in enumerate(truths):
        if len(gt):
            best = box_iou(pred_xyxy[b].reshape(-1, 4), gt).max(1).values
            ignore[b] = (best > thresh).view(ignore.shape[1:])
    return ignore


def assign(gt: torch.Tensor, head: YoloHead, shape: tuple[int, ...], input_hw: tuple[int, int]):
    """Positive (truth, anchor-in-mask, cell) pairs of one layer.

    Args:
        gt: [N, 6] rows (image, class, cx, cy, w, h) in input pixels.
    Returns:
        (truth row, local anchor, grid y, grid x) index tensors.
    """
    anchors = head.anchors.to(gt.device)
    ious = _wh_iou(gt[:, 4:6], anchors)                                 # [N, num]
    best = ious.argmax(1)
    hit = F.one_hot(best, len(anchors)).bool() | (ious > head.iou_thresh)
    in_mask = torch.zeros(len(anchors), dtype=torch.bool, device=gt.device)
    in_mask[head.mask] = True
    rows, anchor = (hit & in_mask).nonzero(as_tuple=True)
    local = torch.full((len(anchors),), -1, dtype=torch.long, device=gt.device)
    local[head.mask] = torch.arange(len(head.mask), device=gt.device)
    h, w = shape[2], shape[3]
    gx = (gt[rows, 2] * w / input_hw[1]).long().clamp(0, w - 1)
    gy = (gt[rows, 3] * h / input_hw[0]).long().clamp(0, h - 1)
    return rows, local[anchor], gy, gx


def _box_loss(p: torch.Tensor, gt: torch.Tensor, head: YoloHead, cell: tuple, input_hw: tuple[int, int],
              divisor: torch.Tensor) -> torch.Tensor:
    rows, a, gy, gx = cell
    b = gt[rows, 0].long()
    if head.iou_loss != "mse":
        # darknet's IoU deltas on the raw outputs, in fractions of the network input as darknet's boxes
        size = p.new_tensor((input_hw[1], input_hw[0]))
        anchors = head.masked_anchors.to(p.device, p.dtype)[a] / size
        truth = gt[rows, 2:6].to(p.dtype) / size.repeat(2)
        grid_xy = torch.stack((gx, gy), -1).to(p.dtype)
        loss = DarknetBoxLoss.apply(p[b, a, gy, gx, :4], grid_xy, anchors, truth, (p.shape[3], p.shape[2]),
                                    divisor, head.iou_loss, head.scale_x_y, head.iou_normalizer,
                                    head.max_delta, head.new_coords, MAX_LOG_WH)
        return loss.sum()
    h, w = p.shape[2], p.shape[3]
    z = p[b, a, gy, gx]
    scale = 2 - gt[rows, 4] * gt[rows, 5] / (input_hw[0] * input_hw[1])
    txy = torch.stack((gt[rows, 2] * w / input_hw[1] - gx, gt[rows, 3] * h / input_hw[0] - gy), -1)
    s = head.scale_x_y
    txy = (txy + (s - 1) / 2) / s                                        # target of sigmoid(z)
    anchors = head.masked_anchors.to(p.device)[a]
    twh = torch.log(gt[rows, 4:6] / anchors)
    txy = txy.clamp(0, 1)
    # minus the targets' entropy (a constant: same gradient) so a perfect fit scores 0
    xy = s * (F.binary_cross_entropy_with_logits(z[:, :2], txy, reduction="none") - _entropy(txy)).sum(1)
    wh = 0.5 * ((z[:, 2:4] - twh) ** 2).sum(1)
    return head.iou_normalizer * (scale * (xy + wh)).sum()


def _entropy(p: torch.Tensor) -> torch.Tensor:
    """Binary entropy: the minimum of BCE against soft targets ``p``."""
    return -(torch.xlogy(p, p) + torch.xlogy(1 - p, 1 - p))


def _bce(z: torch.Tensor, target: torch.Tensor, head: YoloHead) -> torch.Tensor:
    if head.new_coords:  # already probabilities
        return F.binary_cross_entropy(z.clamp(1e-7, 1 - 1e-7), target, reduction="none")
    return F.binary_cross_entropy_with_logits(z, target, reduction="none")


def _class_terms(p: torch.Tensor, gt: torch.Tensor, head: YoloHead, cell: tuple):
    """Class logits, their targets, and each truth row's box-delta divisor.

    Targets are darknet's ``y (1 - eps) + eps / 2``. For the IoU losses (AlexeyAB) a cell-anchor
    holding several truths gets one multi-hot target, as ``delta_yolo_class`` sets its class deltas
    once; with ``iou_thresh`` < 1 its box deltas are divided by its number of positive class deltas
    (``averages_yolo_deltas``). The mse path keeps one target per truth row (its smoke reference was
    measured so).
    """
    rows, a, gy, gx = cell
    b = gt[rows, 0].long()
    classes = gt[rows, 1].long()
    eps = head.label_smooth_eps
    off, on = eps / 2, 1 - eps / 2
    divisor = torch.ones(len(rows), dtype=p.dtype, device=p.device)
    if head.iou_loss == "mse":
        target = F.one_hot(classes, head.classes).to(p.dtype) * (on - off) + off
        return p[b, a, gy, gx, 5:], target, divisor
    _, anchors, h, w, _ = p.shape
    flat = ((b * anchors + a) * h + gy) * w + gx
    cells, inverse = flat.unique(return_inverse=True)
    target = p.new_full((len(cells), head.classes), off)
    target[inverse, classes] = on
    cb, ca, cy, cx = cells // (anchors * h * w), cells // (h * w) % anchors, cells // w % h, cells % w
    logits = p[cb, ca, cy, cx, 5:]
    if head.iou_thresh < 1:
        with torch.no_grad():
            positive = (target > _probabilities(p[cb, ca, cy, cx], head)[:, 1:]).sum(1)
        divisor = positive.clamp(min=1).to(p.dtype)[inverse]
    return logits, target, divisor


def layer_loss(raw: torch.Tensor, gt: torch.Tensor, head: YoloHead, input_hw: tuple[int, int],
               batch: int) -> dict[str, torch.Tensor]:
    """Box, objectness and class loss of one [yolo] layer (sums; the caller divides by batch)."""
    p = split_map(raw, head)
    with torch.no_grad():
        pred_xywh = decode_xywh(p, head, input_hw)
        truths = [box_convert(gt[gt[:, 0] == b, 2:6], "cxcywh", "xyxy") for b in range(batch)]
        ignore = _ignore_mask(box_convert(pred_xywh, "cxcywh", "xyxy"), truths, head.ignore_thresh)
    obj_target = torch.zeros_like(p[..., 4])
    weight = (~ignore).to(p.dtype)
    cell = assign(gt, head, p.shape, input_hw)
    rows, a, gy, gx = cell
    b = gt[rows, 0].long()
    obj_target[b, a, gy, gx] = 1.0
    weight[b, a, gy, gx] = 1.0
    obj = head.obj_normalizer * (_bce(p[..., 4], obj_target, head) * weight).sum()
    logits, cls_target, divisor = _class_terms(p, gt, head, cell)
    cls = _bce(logits, cls_target, head).sum()
    box = _box_loss(p, gt, head, cell, input_hw, divisor) if len(rows) else p.sum() * 0
    return {"box": box, "obj": obj, "cls": cls}


def truths_tensor(targets: list[dict[str, Any]], device: Any) -> torch.Tensor:
    """[N, 6] rows (image, class index, cx, cy, w, h) from targets with ``boxes`` and ``classes``."""
    rows = []
    for i, t in enumerate(targets):
        boxes = t["boxes"].to(device, torch.float32).reshape(-1, 4)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        xywh = box_convert(boxes[keep], "xyxy", "cxcywh")
        index = torch.full((len(xywh), 1), float(i), device=device)
        rows.append(torch.cat((index, t["classes"].to(device)[keep, None].float(), xywh), 1))
    return torch.cat(rows) if rows else torch.zeros((0, 6), device=device)


def yolo_loss(outputs: list[torch.Tensor], targets: list[dict[str, Any]], heads: list[YoloHead],
              input_hw: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Total loss (``loss``) and its parts over all [yolo] layers, per image of the batch."""
    batch = outputs[0].shape[0]
    gt = truths_tensor(targets, outputs[0].device)
    zero = outputs[0].new_zeros((), dtype=torch.float32)   # the parts are float32 (raw.float())
    parts = {"box": zero, "obj": zero, "cls": zero}
    for raw, head in zip(outputs, heads):
        for key, value in layer_loss(raw.float(), gt, head, input_hw, batch).items():
            parts[key] = parts[key] + value / batch
    return {"loss": parts["box"] + parts["obj"] + parts["cls"], **parts}
