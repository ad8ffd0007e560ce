"""Darknet's detector-evaluation geometry, restated for tests pixel by pixel in float32 as its C
does (pjreddie/darknet src/image.c resize_image and letterbox_image, src/yolo_layer.c
correct_yolo_boxes, examples/detector.c print_cocos). Slow plain loops on purpose: an independent
statement of the reference to hold the product's vectorised version to; never imported by it."""

from __future__ import annotations

import numpy as np

F32 = np.float32


def resize_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``resize_image`` of a float32 [C, H, W] image."""
    channels, in_h, in_w = image.shape
    part = np.zeros((channels, in_h, width), dtype=F32)
    resized = np.zeros((channels, height, width), dtype=F32)
    w_scale = F32(in_w - 1) / F32(width - 1)
    h_scale = F32(in_h - 1) / F32(height - 1)
    for k in range(channels):
        for r in range(in_h):
            for c in range(width):
                if c == width - 1 or in_w == 1:
                    value = image[k, r, in_w - 1]
                else:
                    sx = F32(c) * w_scale
                    ix = int(sx)
                    dx = F32(sx - F32(ix))
                    value = F32(F32(F32(1) - dx) * image[k, r, ix]) + F32(dx * image[k, r, ix + 1])
                part[k, r, c] = value
    for k in range(channels):
        for r in range(height):
            sy = F32(r) * h_scale
            iy = int(sy)
            dy = F32(sy - F32(iy))
            for c in range(width):
                resized[k, r, c] = F32(F32(1) - dy) * part[k, iy, c]
            if r == height - 1 or in_h == 1:
                continue
            for c in range(width):
                resized[k, r, c] = F32(resized[k, r, c] + F32(dy * part[k, iy + 1, c]))
    return resized


def new_size(in_w: int, in_h: int, net: int) -> tuple[int, int]:
    if F32(net) / F32(in_w) < F32(net) / F32(in_h):
        return net, (in_h * net) // in_w
    return (in_w * net) // in_h, net


def letterbox_image(image: np.ndarray, net: int) -> np.ndarray:
    """``letterbox_image``: resized, embedded at integer offsets on grey 0.5."""
    channels, in_h, in_w = image.shape
    new_w, new_h = new_size(in_w, in_h, net)
    resized = resize_image(image, new_w, new_h)
    boxed = np.full((channels, net, net), 0.5, dtype=F32)
    dx, dy = (net - new_w) // 2, (net - new_h) // 2
    boxed[:, dy:dy + new_h, dx:dx + new_w] = resized
    return boxed


def cocos_box(x1: float, y1: float, x2: float, y2: float, in_w: int, in_h: int, net: int,
              letter_box: bool) -> list[float]:
    """A box in network pixels -> the [x, y, w, h] ``print_cocos`` writes (``correct_yolo_boxes``
    on its centre form, then clipped to the image)."""
    new_w, new_h = new_size(in_w, in_h, net) if letter_box else (net, net)
    bx, by = (x1 + x2) / 2 / net, (y1 + y2) / 2 / net          # relative to the network, as get_yolo_box
    bw, bh = (x2 - x1) / net, (y2 - y1) / net
    bx = (bx - (net - new_w) / 2.0 / net) / (new_w / net) * in_w
    by = (by - (net - new_h) / 2.0 / net) / (new_h / net) * in_h
    bw, bh = bw * net / new_w * in_w, bh * net / new_h * in_h
    xmin, xmax = max(bx - bw / 2, 0.0), min(bx + bw / 2, float(in_w))
    ymin, ymax = max(by - bh / 2, 0.0), min(by + bh / 2, float(in_h))
    return [xmin, ymin, xmax - xmin, ymax - ymin]


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + np.exp(-v))


def _iou(a: list[float], b: list[float]) -> float:
    """darknet's box_iou on (x, y, w, h) centre boxes."""
    def overlap(c1: float, w1: float, c2: float, w2: float) -> float:
        return min(c1 + w1 / 2, c2 + w2 / 2) - max(c1 - w1 / 2, c2 - w2 / 2)
    w, h = overlap(a[0], a[2], b[0], b[2]), overlap(a[1], a[3], b[1], b[3])
    inter = 0.0 if w < 0 or h < 0 else w * h
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def yolo_detections(outputs: list[np.ndarray], layers: list[dict], net: int, thresh: float = 0.005,
                    nms: float = 0.45) -> list[tuple[int, float, list[float]]]:
    """``get_yolo_detections`` + ``do_nms_sort`` on one image's raw [yolo] maps ([A*(5+C), H, W]
    each; ``layers``: anchors (pixels), mask, classes, scale_x_y): (class, prob, x1 y1 x2 y2 in
    network pixels, unclipped) for every class whose probability survives."""
    dets = []
    for raw, layer in zip(outputs, layers):
        classes, mask, s = layer["classes"], layer["mask"], layer["scale_x_y"]
        _, height, width = raw.shape
        entries = raw.reshape(len(mask), 5 + classes, height, width)
        for n, anchor in enumerate(mask):
            for j in range(height):
                for i in range(width):
                    e = entries[n, :, j, i]
                    objectness = _sigmoid(e[4])
                    if objectness <= thresh:
                        continue
                    pw, ph = layer["anchors"][anchor]
                    shift = (s - 1) / 2
                    box = [(i + _sigmoid(e[0]) * s - shift) / width, (j + _sigmoid(e[1]) * s - shift) / height,
                           np.exp(e[2]) * pw / net, np.exp(e[3]) * ph / net]
                    probs = [objectness * _sigmoid(c) for c in e[5:]]
                    dets.append((box, [p if p > thresh else 0.0 for p in probs]))
    out = []
    classes = len(dets[0][1]) if dets else 0
    for k in range(classes):
        order = sorted(range(len(dets)), key=lambda d: -dets[d][1][k])
        probs = [dets[d][1][k] for d in order]
        for a in range(len(order)):
            if probs[a] == 0:
                continue
            for b in range(a + 1, len(order)):
                if _iou(dets[order[a]][0], dets[order[b]][0]) > nms:
                    probs[b] = 0.0
        for a, d in enumerate(order):
            if probs[a] > 0:
                x, y, w, h = (v * net for v in dets[d][0])
                out.append((k, probs[a], [x - w / 2, y - h / 2, x + w / 2, y + h / 2]))
    return out
