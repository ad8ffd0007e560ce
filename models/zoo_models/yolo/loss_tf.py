"""YOLOv3 [yolo]-layer loss, box decoding and NMS in TensorFlow: the twin of models/zoo_models/yolo/loss.py.

Paper: Redmon & Farhadi, "YOLOv3: An Incremental Improvement", arXiv:1804.02767. Reference
implementation: pjreddie/darknet ``src/yolo_layer.c`` (public domain / YOLO licence);
re-implemented, not copied. The loss terms, their scales and the matching rules are those of
``models/zoo_models/yolo/loss.py`` (read its docstring); ``tests/models/test_yolo_tf.py`` checks that both
give the same loss on the same maps and truths.

Shapes are static: truths come padded to ``[B, T]`` with a ``valid`` mask and every (image,
truth, anchor) triple is scored and masked, instead of gathering a data-dependent number of
positives. The sums are the same, and XLA (TPU) compiles static shapes only.
Maps are NHWC: ``[B, H, W, A*(5+C)]``, split to ``[B, H, W, A, 5+C]``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from replicate.errors import ConfigError
from replicate.tf_import import tensorflow
from zoo_models.yolo.loss import MAP_CONF_THRESH, MAP_NMS_IOU, MAX_DETECTIONS, MAX_LOG_WH, PRE_NMS_TOPK, YoloHead


def check_heads(heads: list[YoloHead]) -> None:
    """Fail on [yolo] options the TF loss does not implement (YOLOv3's cfgs use none of them)."""
    for head in heads:
        if head.iou_loss != "mse" or head.new_coords or head.max_delta != math.inf:
            raise ConfigError(f"[yolo] layer {head.index}", "the TensorFlow loss implements YOLOv3's "
                              "iou_loss=mse without new_coords/max_delta; use framework=torch for this cfg")


def split_map(tf: Any, raw: Any, head: YoloHead) -> Any:
    """[B, H, W, A*(5+C)] -> [B, H, W, A, 5+C]."""
    shape = tf.shape(raw)
    return tf.reshape(raw, [shape[0], shape[1], shape[2], len(head.mask), head.classes + 5])


def decode_xywh(tf: Any, p: Any, head: YoloHead, input_hw: tuple[int, int]) -> Any:
    """Boxes (cx, cy, w, h) in input pixels from a split map [B, H, W, A, 5+C]."""
    h, w = tf.shape(p)[1], tf.shape(p)[2]
    stride = tf.stack([input_hw[1] / tf.cast(w, tf.float32), input_hw[0] / tf.cast(h, tf.float32)])
    ys, xs = tf.meshgrid(tf.range(h), tf.range(w), indexing="ij")
    grid = tf.cast(tf.stack((xs, ys), -1), tf.float32)[:, :, None, :]          # [H, W, 1, 2]
    anchors = tf.constant(head.masked_anchors.numpy(), tf.float32)              # [A, 2]
    s = head.scale_x_y
    xy = (tf.sigmoid(p[..., :2]) * s - (s - 1) / 2 + grid) * stride
    wh = tf.exp(tf.minimum(p[..., 2:4], MAX_LOG_WH)) * anchors
    return tf.concat((xy, wh), -1)


def xywh_to_xyxy(tf: Any, b: Any) -> Any:
    return tf.concat((b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2), -1)


def pairwise_iou(tf: Any, a: Any, b: Any) -> Any:
    """IoU of xyxy boxes [B, N, 4] x [B, T, 4] -> [B, N, T]."""
    lt = tf.maximum(a[:, :, None, :2], b[:, None, :, :2])
    rb = tf.minimum(a[:, :, None, 2:], b[:, None, :, 2:])
    inter = tf.reduce_prod(tf.maximum(rb - lt, 0.0), -1)
    area_a = tf.reduce_prod(a[..., 2:] - a[..., :2], -1)[:, :, None]
    area_b = tf.reduce_prod(b[..., 2:] - b[..., :2], -1)[:, None, :]
    return inter / tf.maximum(area_a + area_b - inter, 1e-9)


def _entropy(tf: Any, p: Any) -> Any:
    return -(tf.math.xlogy(p, p) + tf.math.xlogy(1 - p, 1 - p))


def _assign(tf: Any, gt_xywh: Any, valid: Any, head: YoloHead, hw: Any, input_hw: tuple[int, int]):
    """Per (image, truth, local anchor): is it a positive, and its cell (gy, gx).

    A truth goes to its best anchor over *all* of the layer's anchors (and every anchor above
    ``iou_thresh``), if that anchor is in this layer's mask (darknet's rule, as in yolo_loss.assign).
    """
    anchors = tf.constant(head.anchors.numpy(), tf.float32)                      # [num, 2]
    wh = gt_xywh[..., 2:]                                                          # [B, T, 2]
    inter = tf.reduce_prod(tf.minimum(wh[..., None, :], anchors), -1)             # [B, T, num]
    ious = inter / (tf.reduce_prod(wh, -1)[..., None] + tf.reduce_prod(anchors, -1) - inter)
    best = tf.equal(tf.range(len(head.anchors), dtype=tf.int64), tf.argmax(ious, -1)[..., None])
    hit = tf.logical_or(best, ious > head.iou_thresh)
    hit = tf.gather(hit, head.mask, axis=-1) & valid[..., None]                   # [B, T, A]
    h, w = hw[0], hw[1]
    gx = tf.clip_by_value(tf.cast(gt_xywh[..., 0] * tf.cast(w, tf.float32) / input_hw[1], tf.int32), 0, w - 1)
    gy = tf.clip_by_value(tf.cast(gt_xywh[..., 1] * tf.cast(h, tf.float32) / input_hw[0], tf.int32), 0, h - 1)
    return hit, gy, gx


def layer_loss(tf: Any, raw: Any, gt_xywh: Any, gt_cls: Any, valid: Any, head: YoloHead,
               input_hw: tuple[int, int]) -> dict[str, Any]:
    """Box, objectness and class loss of one [yolo] layer (sums; the caller divides by batch).

    Args:
        raw: [B, H, W, A*(5+C)] map.
        gt_xywh: [B, T, 4] truths (cx, cy, w, h) in input pixels; padding rows anywhere.
        gt_cls: [B, T] class indices.
        valid: [B, T] which rows are real truths.
    """
    p = split_map(tf, raw, head)
    shape = tf.shape(p)
    batch, n_anchor, n_truth = shape[0], len(head.mask), tf.shape(gt_xywh)[1]
    pred_xywh = decode_xywh(tf, p, head, input_hw)
    flat_pred = tf.reshape(xywh_to_xyxy(tf, tf.stop_gradient(pred_xywh)), [batch, -1, 4])
    iou = pairwise_iou(tf, flat_pred, xywh_to_xyxy(tf, gt_xywh)) * tf.cast(valid, tf.float32)[:, None, :]
    ignore = tf.reshape(tf.reduce_max(tf.concat([iou, tf.zeros_like(iou[..., :1])], -1), -1) > head.ignore_thresh,
                        shape[:4])
    hit, gy, gx = _assign(tf, gt_xywh, valid, head, shape[1:3], input_hw)
    # cell of every (b, t, a): [B, T, A, 4] indices into [B, H, W, A]
    b_idx = tf.broadcast_to(tf.range(batch)[:, None, None], [batch, n_truth, n_anchor])
    a_idx = tf.broadcast_to(tf.range(n_anchor)[None, None, :], [batch, n_truth, n_anchor])
    cell = tf.stack([b_idx, tf.broadcast_to(gy[..., None], tf.shape(b_idx)),
                     tf.broadcast_to(gx[..., None], tf.shape(b_idx)), a_idx], -1)
    hitf = tf.cast(hit, tf.float32)
    obj_target = tf.tensor_scatter_nd_max(tf.zeros(shape[:4]), tf.reshape(cell, [-1, 4]), tf.reshape(hitf, [-1]))
    weight = tf.maximum(1.0 - tf.cast(ignore, tf.float32), obj_target)
    bce = tf.nn.sigmoid_cross_entropy_with_logits
    obj = head.obj_normalizer * tf.reduce_sum(bce(labels=obj_target, logits=p[..., 4]) * weight)
    z = tf.gather_nd(p, cell)                                                       # [B, T, A, 5+C]
    eps = head.label_smooth_eps
    cls_target = tf.one_hot(gt_cls, head.classes) * (1 - eps) + eps / 2   # darknet's smoothing, [B, T, C]
    cls_target = tf.broadcast_to(cls_target[:, :, None, :], tf.shape(z[..., 5:]))
    # no cls_normalizer: darknet applies it only with counters_per_class (refused, as in loss.py)
    cls = tf.reduce_sum(tf.reduce_sum(bce(labels=cls_target, logits=z[..., 5:]), -1) * hitf)
    box = _box_loss(tf, z, gt_xywh, head, (gy, gx), shape[1:3], input_hw, hitf)
    return {"box": box, "obj": obj, "cls": cls}


def _box_loss(tf: Any, z: Any, gt_xywh: Any, head: YoloHead, cell: tuple, hw: Any, input_hw: tuple[int, int],
              hitf: Any) -> Any:
    """pjreddie's mse box loss with scale 2 - w*h (see yolo_loss._box_loss), on positives only."""
    gy, gx = cell
    h, w = tf.cast(hw[0], tf.float32), tf.cast(hw[1], tf.float32)
    scale = 2 - gt_xywh[..., 2] * gt_xywh[..., 3] / (input_hw[0] * input_hw[1])        # [B, T]
    txy = tf.stack((gt_xywh[..., 0] * w / input_hw[1] - tf.cast(gx, tf.float32),
                    gt_xywh[..., 1] * h / input_hw[0] - tf.cast(gy, tf.float32)), -1)
    s = head.scale_x_y
    txy = tf.clip_by_value((txy + (s - 1) / 2) / s, 0.0, 1.0)[:, :, None, :]           # [B, T, 1, 2]
    txy = tf.broadcast_to(txy, tf.shape(z[..., :2]))
    anchors = tf.constant(head.masked_anchors.numpy(), tf.float32)                    # [A, 2]
    # padding rows have w = h = 0: log of a positive placeholder keeps them finite (masked anyway)
    safe_wh = tf.where(gt_xywh[..., 2:] > 0, gt_xywh[..., 2:], 1.0)[:, :, None, :]
    twh = tf.math.log(safe_wh / anchors)
    xy = s * tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=txy, logits=z[..., :2])
                           - _entropy(tf, txy), -1)
    wh = 0.5 * tf.reduce_sum((z[..., 2:4] - twh) ** 2, -1)
    return head.iou_normalizer * tf.reduce_sum(scale[..., None] * (xy + wh) * hitf)


def yolo_loss(outputs: list, gt_xyxy: Any, gt_cls: Any, valid: Any, heads: list[YoloHead],
              input_hw: tuple[int, int]) -> dict[str, Any]:
    """Total loss (``loss``) and its parts over all [yolo] layers, per image of the batch.

    Args:
        outputs: Raw NHWC maps, one per head.
        gt_xyxy: [B, T, 4] truth boxes (x0, y0, x1, y1) in input pixels.
        gt_cls: [B, T] int class indices.
        valid: [B, T] bool, False on padding rows and empty boxes.
    """
    tf = tensorflow()
    gt_xyxy = tf.cast(gt_xyxy, tf.float32)
    valid = valid & (gt_xyxy[..., 2] > gt_xyxy[..., 0]) & (gt_xyxy[..., 3] > gt_xyxy[..., 1])
    gt_xywh = tf.concat(((gt_xyxy[..., :2] + gt_xyxy[..., 2:]) / 2, gt_xyxy[..., 2:] - gt_xyxy[..., :2]), -1)
    gt_xywh = gt_xywh * tf.cast(valid, tf.float32)[..., None]
    batch = tf.cast(tf.shape(outputs[0])[0], tf.float32)
    parts = {"box": 0.0, "obj": 0.0, "cls": 0.0}
    for raw, head in zip(outputs, heads):
        for key, value in layer_loss(tf, tf.cast(raw, tf.float32), gt_xywh, gt_cls, valid, head, input_hw).items():
            parts[key] = parts[key] + value / batch
    return {"loss": parts["box"] + parts["obj"] + parts["cls"], **parts}


def per_class_positions(labels: np.ndarray, most: int) -> np.ndarray:
    """Positions of ``labels`` (descending score order) among the first ``most`` of their class."""
    seen: dict[int, int] = {}
    keep = []
    for i, label in enumerate(labels.tolist()):
        seen[label] = seen.get(label, 0) + 1
        if seen[label] <= most:
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def postprocess(outputs: list, heads: list[YoloHead], input_hw: tuple[int, int], conf_thresh: float = MAP_CONF_THRESH,
                nms_iou: float = MAP_NMS_IOU, max_det: int = MAX_DETECTIONS) -> list[dict[str, np.ndarray]]:
    """Per image: ``boxes`` xyxy in input pixels, ``scores``, ``labels`` (class indices), numpy.

    Scores are objectness x class probability for every class above the threshold (multi-label,
    as darknet), then per-class greedy NMS with tf.image.non_max_suppression: boxes of different
    classes are shifted apart by more than the image so one NMS call never suppresses across
    classes (the same device torchvision's batched_nms uses). As darknet, NMS sees the boxes as
    predicted; they are clipped to the input afterwards.
    """
    tf = tensorflow()
    boxes, probs = [], []
    for raw, head in zip(outputs, heads):
        p = split_map(tf, tf.cast(raw, tf.float32), head)
        batch = tf.shape(p)[0]
        boxes.append(tf.reshape(xywh_to_xyxy(tf, decode_xywh(tf, p, head, input_hw)), [batch, -1, 4]))
        probs.append(tf.reshape(tf.sigmoid(p[..., 4:]), [batch, -1, head.classes + 1]))
    all_boxes, all_probs = tf.concat(boxes, 1), tf.concat(probs, 1)
    limit = tf.constant([input_hw[1], input_hw[0], input_hw[1], input_hw[0]], tf.float32)
    results = []
    for xyxy, pr in zip(tf.unstack(all_boxes), tf.unstack(all_probs)):
        scores = pr[:, :1] * pr[:, 1:]                                                    # [N, C]
        where = tf.where(scores > conf_thresh)
        sc = tf.gather_nd(scores, where)
        order = tf.argsort(sc, direction="DESCENDING")[:PRE_NMS_TOPK]
        where, sc = tf.gather(where, order), tf.gather(sc, order)
        bx = tf.gather(xyxy, where[:, 0])   # as predicted: darknet clips only when it writes them
        cls = where[:, 1]
        span = 2.0 * tf.reduce_max(tf.abs(bx)) + 1.0 if len(sc) else 1.0
        shift = tf.cast(cls, tf.float32)[:, None] * span
        keep = tf.image.non_max_suppression(bx + shift, sc, tf.shape(sc)[0], iou_threshold=nms_iou).numpy()
        labels = tf.gather(cls, keep).numpy()
        keep = keep[per_class_positions(labels, max_det)]   # COCOeval's maxDets per image and category
        results.append({"boxes": tf.clip_by_value(tf.gather(bx, keep), 0.0, limit).numpy(),
                        "scores": tf.gather(sc, keep).numpy(), "labels": tf.gather(cls, keep).numpy()})
    return results
