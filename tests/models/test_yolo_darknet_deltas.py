"""The IoU-loss [yolo] layer's gradients on the raw outputs equal AlexeyAB darknet's deltas.

Reference restated here in numpy, scalar by scalar (AlexeyAB/darknet at commit
59596d7880f6504768df41d6daa586f5cb2b932f):

* ``src/yolo_layer.c``: ``forward_yolo_layer`` (logistic on x, y, objectness, classes;
  ``scale_x_y`` on x, y), ``process_batch`` (objectness deltas with ``ignore_thresh`` and
  ``compare_yolo_class``; best anchor over all anchors; the ``iou_thresh`` loop; the final
  ``averages_yolo_deltas``), ``delta_yolo_box`` (the ``iou_loss != MSE`` branch), ``delta_yolo_class``
  (label smoothing, ``classes_multipliers`` unset), ``get_yolo_box``, ``fix_nan_inf``, ``clip_value``;
  ``backward_yolo_layer`` adds the deltas to the previous layer's unchanged;
* ``src/box.c``: ``box_iou`` (``overlap``, ``box_intersection``, ``box_union``) and ``dx_box_iou``.

The product's gradient of (box + obj + cls) of one layer must be ``-delta`` (darknet's deltas point
down the loss). Class logit 0 is kept positive so that every prediction passes
``compare_yolo_class``'s 0.25, which the product's ignore rule does not check (a recorded deviation).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zoo_models.yolo.loss import YoloHead, layer_loss

INPUT_HW = (96, 128)      # network height, width (darknet's net.h, net.w): non-square on purpose
ANCHORS = [(6, 8), (14, 10), (12, 26), (30, 22), (24, 50), (58, 40), (50, 84), (100, 70), (120, 92)]
MASKS = [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
STRIDES = [8, 16, 32]
SCALE_X_Y = [1.2, 1.1, 1.05]
CLASSES = 4


# --------------------------------------------------------------------------- box.c, restated
def overlap(x1, w1, x2, w2):
    left = max(x1 - w1 / 2, x2 - w2 / 2)
    right = min(x1 + w1 / 2, x2 + w2 / 2)
    return right - left


def box_iou_np(a, b):
    w, h = overlap(a[0], a[2], b[0], b[2]), overlap(a[1], a[3], b[1], b[3])
    inter = 0.0 if (w < 0 or h < 0) else w * h
    union = a[2] * a[3] + b[2] * b[3] - inter
    return 0.0 if (inter == 0 or union == 0) else inter / union


def dx_box_iou_np(pred, truth, kind):
    """box.c dx_box_iou: returns (dx, dy, dw, dh) (darknet's dt, db, dl, dr fields)."""
    px, py, pw, ph = pred
    tx, ty, tw, th = truth
    top, bot, left, right = py - ph / 2, py + ph / 2, px - pw / 2, px + pw / 2
    pred_t, pred_b, pred_l, pred_r = min(top, bot), max(top, bot), min(left, right), max(left, right)
    tt, tb, tl, tr = ty - th / 2, ty + th / 2, tx - tw / 2, tx + tw / 2
    X = (pred_b - pred_t) * (pred_r - pred_l)
    Xhat = (tb - tt) * (tr - tl)
    Ih = min(pred_b, tb) - max(pred_t, tt)
    Iw = min(pred_r, tr) - max(pred_l, tl)
    I = Iw * Ih  # noqa: E741 (darknet's name)
    U = X + Xhat - I
    S = (px - tx) ** 2 + (py - ty) ** 2
    giou_Cw = max(pred_r, tr) - min(pred_l, tl)
    giou_Ch = max(pred_b, tb) - min(pred_t, tt)
    giou_C = giou_Cw * giou_Ch
    dX = {"t": -(pred_r - pred_l), "b": pred_r - pred_l, "l": -(pred_b - pred_t), "r": pred_b - pred_t}
    dI = {"t": -Iw if pred_t > tt else 0.0, "b": Iw if pred_b < tb else 0.0,
          "l": -Ih if pred_l > tl else 0.0, "r": Ih if pred_r < tr else 0.0}
    dU = {k: dX[k] - dI[k] for k in "tblr"}
    dC = {"t": -giou_Cw if pred_t < tt else 0.0, "b": giou_Cw if pred_b > tb else 0.0,
          "l": -giou_Ch if pred_l < tl else 0.0, "r": giou_Ch if pred_r > tr else 0.0}
    p = dict.fromkeys("tblr", 0.0)
    if U > 0:
        p = {k: (U * dI[k] - I * dU[k]) / (U * U) for k in "tblr"}
    p["t"] = p["t"] if top < bot else p["b"]
    p["b"] = p["b"] if top < bot else p["t"]
    p["l"] = p["l"] if left < right else p["r"]
    p["r"] = p["r"] if left < right else p["l"]
    if kind == "giou":
        if giou_C > 0:
            p = {k: p[k] + (giou_C * dU[k] - U * dC[k]) / (giou_C * giou_C) for k in "tblr"}
        if Iw <= 0 or Ih <= 0:
            p = {k: (giou_C * dU[k] - U * dC[k]) / (giou_C * giou_C) for k in "tblr"}
    Ct, Cb = min(py - ph / 2, ty - th / 2), max(py + ph / 2, ty + th / 2)
    Cl, Cr = min(px - pw / 2, tx - tw / 2), max(px + pw / 2, tx + tw / 2)
    Cw, Ch = Cr - Cl, Cb - Ct
    C = Cw * Cw + Ch * Ch
    dCt_dy, dCt_dh = (1.0, -0.5) if pred_t < tt else (0.0, 0.0)
    dCb_dy, dCb_dh = (1.0, 0.5) if pred_b > tb else (0.0, 0.0)
    dCl_dx, dCl_dw = (1.0, -0.5) if pred_l < tl else (0.0, 0.0)
    dCr_dx, dCr_dw = (1.0, 0.5) if pred_r > tr else (0.0, 0.0)
    dCw_dx, dCw_dy, dCw_dw, dCw_dh = dCr_dx - dCl_dx, 0.0, dCr_dw - dCl_dw, 0.0
    dCh_dx, dCh_dy, dCh_dw, dCh_dh = 0.0, dCb_dy - dCt_dy, 0.0, dCb_dh - dCt_dh
    p_dx, p_dy = p["l"] + p["r"], p["t"] + p["b"]
    p_dw, p_dh = p["r"] - p["l"], p["b"] - p["t"]

    def distance_terms():
        return ((2 * (tx - px) * C - (2 * Cw * dCw_dx + 2 * Ch * dCh_dx) * S) / (C * C),
                (2 * (ty - py) * C - (2 * Cw * dCw_dy + 2 * Ch * dCh_dy) * S) / (C * C),
                (2 * Cw * dCw_dw + 2 * Ch * dCh_dw) * S / (C * C),
                (2 * Cw * dCw_dh + 2 * Ch * dCh_dh) * S / (C * C))

    if kind == "diou":
        if C > 0:
            ex, ey, ew, eh = distance_terms()
            p_dx, p_dy, p_dw, p_dh = p_dx + ex, p_dy + ey, p_dw + ew, p_dh + eh
        if Iw <= 0 or Ih <= 0:
            p_dx, p_dy, p_dw, p_dh = distance_terms()
    if kind == "ciou":
        ar_gt, ar_pred = tw / th, pw / ph
        ar_loss = 4 / (math.pi * math.pi) * (math.atan(ar_gt) - math.atan(ar_pred)) ** 2
        alpha = ar_loss / (1 - I / U + ar_loss + 0.000001)
        ar_dw = 8 / (math.pi * math.pi) * (math.atan(ar_gt) - math.atan(ar_pred)) * ph
        ar_dh = -8 / (math.pi * math.pi) * (math.atan(ar_gt) - math.atan(ar_pred)) * pw
        if C > 0:
            ex, ey, ew, eh = distance_terms()
            p_dx, p_dy = p_dx + ex, p_dy + ey
            p_dw, p_dh = p_dw + ew + alpha * ar_dw, p_dh + eh + alpha * ar_dh
        if Iw <= 0 or Ih <= 0:
            ex, ey, ew, eh = distance_terms()
            p_dx, p_dy, p_dw, p_dh = ex, ey, ew + alpha * ar_dw, eh + alpha * ar_dh
    return p_dx, p_dy, p_dw, p_dh


# --------------------------------------------------------------------- yolo_layer.c, restated
def fix_nan_inf(v):
    return 0.0 if (math.isnan(v) or math.isinf(v)) else v


def clip_value(v, m):
    return m if v > m else (-m if v < -m else v)


class Layer:
    """The [yolo] layer's state: activated output and deltas, [B, A, 5+C, H, W] (darknet's layout)."""

    def __init__(self, raw, cfg):
        self.cfg = cfg
        self.out = raw.copy()
        s = cfg["scale_x_y"]
        self.out[:, :, :2] = s / (1 + np.exp(-raw[:, :, :2])) - 0.5 * (s - 1)
        self.out[:, :, 4:] = 1 / (1 + np.exp(-raw[:, :, 4:]))
        self.delta = np.zeros_like(raw)
        self.h, self.w = raw.shape[3], raw.shape[4]

    def get_yolo_box(self, b, n_mask, anchor, j, i):
        o = self.out[b, n_mask, :, j, i]
        return ((i + o[0]) / self.w, (j + o[1]) / self.h,
                math.exp(o[2]) * anchor[0] / INPUT_HW[1], math.exp(o[3]) * anchor[1] / INPUT_HW[0])

    def delta_yolo_box(self, truth, b, n_mask, anchor, j, i):
        cfg = self.cfg
        pred = list(self.get_yolo_box(b, n_mask, anchor, j, i))
        pred[2] = 1.0 if pred[2] == 0 else pred[2]
        pred[3] = 1.0 if pred[3] == 0 else pred[3]
        dx, dy, dw, dh = dx_box_iou_np(pred, truth, cfg["iou_loss"])
        dw *= math.exp(self.out[b, n_mask, 2, j, i])
        dh *= math.exp(self.out[b, n_mask, 3, j, i])
        for k, d in enumerate((dx, dy, dw, dh)):
            d = fix_nan_inf(d * cfg["iou_normalizer"])
            if cfg["max_delta"] != math.inf:
                d = clip_value(d, cfg["max_delta"])
            self.delta[b, n_mask, k, j, i] += d

    def delta_yolo_class(self, b, n_mask, j, i, class_id):
        eps = self.cfg["label_smooth_eps"]
        cls_out, cls_delta = self.out[b, n_mask, 5:, j, i], self.delta[b, n_mask, 5:, j, i]
        if cls_delta[class_id]:
            y_true = 1 * (1 - eps) + 0.5 * eps if eps else 1.0
            cls_delta[class_id] = y_true - cls_out[class_id]
            return
        for n in range(CLASSES):
            y_true = 1.0 if n == class_id else 0.0
            if eps:
                y_true = y_true * (1 - eps) + 0.5 * eps
            cls_delta[n] = y_true - cls_out[n]

    def assign(self, truth, b, n_all, j, i, class_id):
        cfg = self.cfg
        n_mask = cfg["mask"].index(n_all)
        self.delta_yolo_box(truth, b, n_mask, ANCHORS[n_all], j, i)
        self.delta[b, n_mask, 4, j, i] = cfg["obj_normalizer"] * (1 - self.out[b, n_mask, 4, j, i])
        self.delta_yolo_class(b, n_mask, j, i, class_id)

    def forward(self, truths):
        cfg = self.cfg
        batch, num = self.out.shape[:2]
        for b in range(batch):
            for j in range(self.h):
                for i in range(self.w):
                    for n in range(num):
                        pred = self.get_yolo_box(b, n, ANCHORS[cfg["mask"][n]], j, i)
                        best_match_iou = 0.0
                        for truth, _ in truths[b]:
                            iou = box_iou_np(pred, truth)
                            class_id_match = any(p > 0.25 for p in self.out[b, n, 5:, j, i])
                            if iou > best_match_iou and class_id_match:
                                best_match_iou = iou
                        self.delta[b, n, 4, j, i] = cfg["obj_normalizer"] * (0 - self.out[b, n, 4, j, i])
                        if best_match_iou > cfg["ignore_thresh"]:
                            self.delta[b, n, 4, j, i] = 0
            for truth, class_id in truths[b]:
                i, j = int(truth[0] * self.w), int(truth[1] * self.h)
                shift = (0, 0, truth[2], truth[3])
                best_iou, best_n = 0.0, 0
                for n, (aw, ah) in enumerate(ANCHORS):
                    iou = box_iou_np((0, 0, aw / INPUT_HW[1], ah / INPUT_HW[0]), shift)
                    if iou > best_iou:
                        best_iou, best_n = iou, n
                if best_n in cfg["mask"]:
                    self.assign(truth, b, best_n, j, i, class_id)
                for n, (aw, ah) in enumerate(ANCHORS):
                    if n in cfg["mask"] and n != best_n and cfg["iou_thresh"] < 1:
                        if box_iou_np((0, 0, aw / INPUT_HW[1], ah / INPUT_HW[0]), shift) > cfg["iou_thresh"]:
                            self.assign(truth, b, n, j, i, class_id)
            if cfg["iou_thresh"] < 1:
                for j in range(self.h):
                    for i in range(self.w):
                        for n in range(num):
                            if self.delta[b, n, 4, j, i] != 0:
                                count = int((self.delta[b, n, 5:, j, i] > 0).sum())
                                if count > 0:
                                    self.delta[b, n, :4, j, i] /= count
        return self.delta


# ------------------------------------------------------------------------------- the inputs
def random_case(seed: int, batch: int = 2):
    """Raw outputs per head and truths of varied sizes, with pairs sharing a cell and anchor."""
    rng = np.random.default_rng(seed)
    H, W = INPUT_HW
    truths = []
    for _ in range(batch):
        rows = []
        for k in range(8):
            # small truths (k < 3) far enough from a tiny prediction in their cell not to overlap it
            w, h = (rng.uniform(3, 7), rng.uniform(3, 7)) if k < 3 else (rng.uniform(4, 110), rng.uniform(4, 85))
            cx, cy = rng.uniform(w / 2, W - w / 2), rng.uniform(h / 2, H - h / 2)
            rows.append((cx, cy, w, h, int(rng.integers(CLASSES))))
        cx, cy, w, h, c = rows[3]   # a second truth in the same cell and anchor, another class
        rows.append((cx + 0.3, cy - 0.2, w * 1.03, h * 0.98, (c + 1) % CLASSES))
        rows.append((cx - 0.2, cy + 0.1, w * 0.97, h, c))   # ... and one of the same class
        truths.append(rows)
    raws = []
    for stride in STRIDES:
        shape = (batch, 3, 5 + CLASSES, H // stride, W // stride)
        raw = rng.normal(0, 2.0, shape)
        raw[:, :, 2:4] = rng.uniform(-3, 2.5, shape[:2] + (2,) + shape[3:])   # tiny to large boxes
        raw[:, :, 4] = rng.normal(-1, 1.5, shape[:2] + shape[3:])
        raw[:, :, 5] = rng.uniform(0.1, 2.0, shape[:2] + shape[3:])          # passes compare_yolo_class
        raws.append(raw)
    return raws, truths


def product_gradient(raw: np.ndarray, truths, cfg) -> np.ndarray:
    batch, num = raw.shape[:2]
    head = YoloHead(index=0, anchors=torch.tensor(ANCHORS, dtype=torch.float64), mask=cfg["mask"],
                    classes=CLASSES, ignore_thresh=cfg["ignore_thresh"], iou_thresh=cfg["iou_thresh"],
                    scale_x_y=cfg["scale_x_y"], iou_loss=cfg["iou_loss"], iou_normalizer=cfg["iou_normalizer"],
                    obj_normalizer=cfg["obj_normalizer"], cls_normalizer=cfg["cls_normalizer"],
                    label_smooth_eps=cfg["label_smooth_eps"], max_delta=cfg["max_delta"], new_coords=False)
    gt = torch.tensor([(b, c, cx, cy, w, h) for b, rows in enumerate(truths) for cx, cy, w, h, c in rows],
                      dtype=torch.float64)
    x = torch.tensor(raw.reshape(batch, num * (5 + CLASSES), *raw.shape[3:]), requires_grad=True)
    parts = layer_loss(x, gt, head, INPUT_HW, batch)
    (parts["box"] + parts["obj"] + parts["cls"]).backward()
    assert x.grad is not None
    return x.grad.numpy().reshape(raw.shape)


def darknet_delta(raw: np.ndarray, truths, cfg) -> np.ndarray:
    H, W = INPUT_HW
    relative = [[((cx / W, cy / H, w / W, h / H), c) for cx, cy, w, h, c in rows] for rows in truths]
    return Layer(raw, cfg).forward(relative)


CONFIGS = {
    # yolov4.cfg's [yolo] options (iou_normalizer 0.07, iou_thresh 0.213, max_delta 5), other normalizers moved
    "yolov4": dict(iou_normalizer=0.07, obj_normalizer=1.0, cls_normalizer=1.0, iou_thresh=0.213,
                   ignore_thresh=0.7, max_delta=5.0, label_smooth_eps=0.0),
    "normalizers": dict(iou_normalizer=0.75, obj_normalizer=0.4, cls_normalizer=3.0, iou_thresh=0.15,
                        ignore_thresh=0.3, max_delta=math.inf, label_smooth_eps=0.1),
    "clipped": dict(iou_normalizer=2.0, obj_normalizer=1.0, cls_normalizer=1.0, iou_thresh=1.0,
                    ignore_thresh=0.5, max_delta=0.05, label_smooth_eps=0.0),
}


@pytest.mark.parametrize("iou_loss", ["ciou", "diou", "giou", "iou"])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_iou_loss_gradients_are_darknets_deltas(iou_loss, config):
    raws, truths = random_case(seed=sorted(CONFIGS).index(config))
    boxes_checked = 0
    for raw, mask, s in zip(raws, MASKS, SCALE_X_Y):
        cfg = dict(CONFIGS[config], iou_loss=iou_loss, mask=mask, scale_x_y=s)
        want = -darknet_delta(raw, truths, cfg)
        got = product_gradient(raw, truths, cfg)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
        boxes_checked += int((want[:, :, :4] != 0).any(2).sum())
    assert boxes_checked >= 8   # the box term was exercised on several heads

