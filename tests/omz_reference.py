"""Open Model Zoo's accuracy checker, restated in numpy for tests from its code at
openvinotoolkit/open_model_zoo 7ef5b91f75115a5eec5a67921453d7faaff8f78b (Apache-2.0), for the
YOLO configs models/public/yolo-v3-tf/accuracy-check.yml and yolo-v4-tf/accuracy-check.yml.
Files and functions, under tools/accuracy_checker/accuracy_checker/:

* adapters/yolo.py: ``YoloV3Adapter.process`` (raw_output: sigmoid corrections; normalizers:
  cells for x/y, the input size for w/h), ``parse_output`` and ``permute_to_HWA_K``;
* postprocessor/resize_prediction_boxes.py ``ResizePredictionBoxes.process_image``;
* postprocessor/filter.py ``FilterByMinConfidence`` (remove_filtered);
* postprocessor/nms.py ``NMS.nms`` and ``DIoUNMS.diou_nms`` (include_boundaries default True);
* postprocessor/clip_boxes.py ``ClipBoxes._clip_boxes``;
* metrics/coco_metrics.py ``prepare_predictions`` (the detections the metric sees per label).

Written from that code in its own loops and order, independently of models/zoo_models/yolo/omz_protocol.py,
which the tests hold to it; never imported by the product."""

from __future__ import annotations

import numpy as np


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def parse_output(predictions: np.ndarray, cells: int, num: int, classes: int, anchors: list[float],
                 input_w: int, input_h: int, threshold: float = 0.001):
    """One layer's detections as the adapter makes them: ``predictions`` is the layer's map as the
    checker holds it after its HWB reshape, [cells, cells, num * (5 + classes)]. Returns labels,
    scores and relative x_min, y_min, x_max, y_max lists."""
    box_size = predictions.shape[2] // num
    if predictions.shape[0] == predictions.shape[1]:
        predictions = np.transpose(predictions, (2, 0, 1))
    _, h, w = predictions.shape
    flat = predictions.reshape(-1, box_size, h, w).transpose(2, 3, 0, 1).reshape(-1, box_size)
    confidence = _sigmoid(flat[:, 4].flatten())
    probabilities = _sigmoid(flat[:, 5:].flatten())
    probabilities *= np.repeat(confidence, classes)
    labels, scores, x_mins, y_mins, x_maxs, y_maxs = [], [], [], [], [], []
    for obj in np.nonzero(confidence > threshold)[0]:
        row = obj // (cells * num)
        col = (obj - row * cells * num) // num
        n = (obj - row * cells * num) % num
        tx, ty, tw, th = flat[obj, :4]
        x = (_sigmoid(tx) + col) / cells
        y = (_sigmoid(ty) + row) / cells
        bw = np.exp(tw) * anchors[2 * n] / input_w
        bh = np.exp(th) * anchors[2 * n + 1] / input_h
        label = int(np.argmax(probabilities[obj * classes:(obj + 1) * classes]))
        labels.append(label)
        scores.append(probabilities[obj * classes + label])
        x_mins.append(x - bw / 2.0)
        y_mins.append(y - bh / 2.0)
        x_maxs.append(x + bw / 2.0)
        y_maxs.append(y + bh / 2.0)
    return labels, scores, x_mins, y_mins, x_maxs, y_maxs


def adapter(layers: list[np.ndarray], masked_anchors: list[list[float]], classes: int, input_w: int,
            input_h: int) -> dict[str, np.ndarray]:
    """``YoloV3Adapter.process`` for one image: every layer's detections, layer after layer."""
    out: dict[str, list] = {"labels": [], "scores": [], "x_mins": [], "y_mins": [], "x_maxs": [], "y_maxs": []}
    for p, anchors in zip(layers, masked_anchors):
        num = len(anchors) // 2
        parsed = parse_output(p, p.shape[0], num, classes, anchors, input_w, input_h)
        for key, values in zip(out, parsed):
            out[key].extend(values)
    return {k: np.asarray(v, dtype=np.int64 if k == "labels" else np.float64) for k, v in out.items()}


def _greedy(x1, y1, x2, y2, scores, thresh, include_boundaries, penalty):
    """The loop ``NMS.nms`` and ``DIoUNMS.diou_nms`` share: the best box is kept, and every other
    whose IoU (with the boundary pixel) less ``penalty`` of the pair exceeds ``thresh`` is dropped."""
    b = 1 if include_boundaries else 0
    areas = (x2 - x1 + b) * (y2 - y1 + b)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + b)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + b)
        intersection = w * h
        union = areas[i] + areas[rest] - intersection
        overlap = np.divide(intersection, union, out=np.zeros_like(intersection, dtype=float), where=union != 0)
        order = order[np.where(overlap - penalty(i, rest) <= thresh)[0] + 1]
    return keep


def nms(x1, y1, x2, y2, scores, thresh, include_boundaries=True):
    """``NMS.nms``: greedy, over all boxes whatever their label."""
    return _greedy(x1, y1, x2, y2, scores, thresh, include_boundaries, lambda i, rest: 0.0)


def diou_nms(x1, y1, x2, y2, scores, thresh, include_boundaries=True):
    """``DIoUNMS.diou_nms``: IoU (with the boundary pixel) minus (d / c) ** 0.6."""
    def centre_distance(i, rest):
        cw = np.maximum(x2[i], x2[rest]) - np.minimum(x1[i], x1[rest])
        ch = np.maximum(y2[i], y2[rest]) - np.minimum(y1[i], y1[rest])
        c_area = cw ** 2 + ch ** 2 + 1e-16
        d_area = ((x2[rest] + x1[rest]) - (x2[i] + x1[i])) ** 2 / 4 + ((y2[rest] + y1[rest]) - (y2[i] + y1[i])) ** 2 / 4
        return pow(d_area / c_area, 0.6)

    return _greedy(x1, y1, x2, y2, scores, thresh, include_boundaries, centre_distance)


def accuracy_checker(layers: list[np.ndarray], masked_anchors: list[list[float]], classes: int, input_size: int,
                     image_w: int, image_h: int, nms_type: str, min_confidence: float = 0.001,
                     overlap: float = 0.5) -> dict[str, np.ndarray]:
    """The YOLO configs' adapter and postprocessing chain on one image: resize_prediction_boxes,
    filter (min_confidence, remove_filtered), nms / diou_nms (overlap), clip_boxes. Returns
    ``boxes`` [N, 4] xyxy in image pixels, ``scores``, ``labels``, in the NMS's keep order."""
    det = adapter(layers, masked_anchors, classes, input_size, input_size)
    x1, x2 = det["x_mins"] * image_w, det["x_maxs"] * image_w
    y1, y2 = det["y_mins"] * image_h, det["y_maxs"] * image_h
    kept = [i for i, s in enumerate(det["scores"]) if not s < min_confidence]
    x1, y1, x2, y2 = x1[kept], y1[kept], x2[kept], y2[kept]
    scores, labels = det["scores"][kept], det["labels"][kept]
    suppress = {"nms": nms, "diou_nms": diou_nms}[nms_type]
    keep = np.asarray(suppress(x1, y1, x2, y2, scores, overlap), dtype=np.int64)
    boxes = np.stack([x1[keep].clip(0, image_w), y1[keep].clip(0, image_h),
                      x2[keep].clip(0, image_w), y2[keep].clip(0, image_h)], 1)
    return {"boxes": boxes, "scores": scores[keep], "labels": labels[keep], "candidates": np.asarray(len(kept))}


def metric_detections(det: dict[str, np.ndarray], max_detections: int = 100) -> dict[str, np.ndarray]:
    """What ``coco_precision`` (max_detections 100) reads of an image's detections: for each
    label, its ``max_detections`` best by score (``prepare_predictions``: mergesort of -score)."""
    chosen = []
    for label in np.unique(det["labels"]):
        ids = np.argwhere(det["labels"] == label).reshape(-1)
        order = np.argsort(-det["scores"][ids], kind="mergesort")[:max_detections]
        chosen.extend(ids[order].tolist())
    chosen_ids = np.asarray(sorted(chosen), dtype=np.int64)
    return {k: (v[chosen_ids] if k != "candidates" else v) for k, v in det.items()}
