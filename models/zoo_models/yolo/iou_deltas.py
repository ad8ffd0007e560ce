"""AlexeyAB darknet's IoU-loss box deltas on the raw outputs of a [yolo] layer, as an autograd Function.

Reference: AlexeyAB/darknet ``src/yolo_layer.c`` ``delta_yolo_box`` (the ``iou_loss != MSE`` branch)
and ``src/box.c`` ``dx_box_iou`` (YOLO licence); read at commit
59596d7880f6504768df41d6daa586f5cb2b932f. Re-implemented, not copied.

Darknet does not back-propagate through its box decoding. ``dx_box_iou`` gives the derivative of
the IoU variant with respect to the decoded box (x, y, w, h as fractions of the network input),
and ``delta_yolo_box`` writes it straight into the deltas of the raw outputs: x and y get it
unchanged (no sigmoid derivative, no ``scale_x_y``, no 1/grid), w and h get it times ``exp(t)``
only (no anchor, no 1/input size), all times ``iou_normalizer``, NaN/inf set to 0, then each
clipped to +-``max_delta``. Plain autograd through the decoding would give x, y a gradient about
``grid / (scale_x_y * sigmoid')`` times smaller (~290x on a 76x76 head). Darknet's deltas point
down the loss (delta = -gradient), so the gradient returned here is ``-delta``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchvision.ops import box_convert, box_iou, complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss

IOU_KINDS = ("iou", "giou", "diou", "ciou")


def dx_box_iou(pred: Tensor, truth: Tensor, kind: str) -> Tensor:
    """d(IoU variant)/d(x, y, w, h) of ``pred`` as darknet's ``dx_box_iou`` computes it.

    Args:
        pred, truth: [N, 4] boxes (cx, cy, w, h), fractions of the network input.
        kind: ``iou``, ``giou``, ``diou`` or ``ciou``.
    Returns:
        [N, 4]: darknet's (dt, db, dl, dr) fields, which hold d/dx, d/dy, d/dw, d/dh. Darknet's own
        approximations are kept: no factor 1/2 on dw, dh; the DIoU/CIoU distance term's derivative
        replaces the IoU term where the boxes do not overlap; CIoU's alpha held constant.
    """
    px, py, pw, ph = pred.unbind(-1)
    tx, ty, tw, th = truth.unbind(-1)
    zero = torch.zeros_like(px)
    top, bot, left, right = py - ph / 2, py + ph / 2, px - pw / 2, px + pw / 2
    p_t, p_b = torch.minimum(top, bot), torch.maximum(top, bot)
    p_l, p_r = torch.minimum(left, right), torch.maximum(left, right)
    t_t, t_b, t_l, t_r = ty - th / 2, ty + th / 2, tx - tw / 2, tx + tw / 2

    area_p = (p_b - p_t) * (p_r - p_l)
    area_t = (t_b - t_t) * (t_r - t_l)
    ih = torch.minimum(p_b, t_b) - torch.maximum(p_t, t_t)
    iw = torch.minimum(p_r, t_r) - torch.maximum(p_l, t_l)
    inter = iw * ih                    # darknet does not clamp: negative overlaps multiply
    union = area_p + area_t - inter
    dist2 = (px - tx) ** 2 + (py - ty) ** 2
    cw_g = torch.maximum(p_r, t_r) - torch.minimum(p_l, t_l)
    ch_g = torch.maximum(p_b, t_b) - torch.minimum(p_t, t_t)
    c_g = cw_g * ch_g

    # (t, b, l, r) derivatives of the predicted area, the intersection, the union and the hull
    d_area = (-(p_r - p_l), p_r - p_l, -(p_b - p_t), p_b - p_t)
    d_inter = (torch.where(p_t > t_t, -iw, zero), torch.where(p_b < t_b, iw, zero),
               torch.where(p_l > t_l, -ih, zero), torch.where(p_r < t_r, ih, zero))
    d_union = tuple(a - i for a, i in zip(d_area, d_inter))
    d_hull = (torch.where(p_t < t_t, -cw_g, zero), torch.where(p_b > t_b, cw_g, zero),
              torch.where(p_l < t_l, -ch_g, zero), torch.where(p_r > t_r, ch_g, zero))

    p = [torch.where(union > 0, (union * di - inter * du) / (union * union), zero)
         for di, du in zip(d_inter, d_union)]
    # darknet's corner selection (a no-op for boxes of positive size), in its order
    tb_ok, lr_ok = top < bot, left < right
    p[0] = torch.where(tb_ok, p[0], p[1])
    p[1] = torch.where(tb_ok, p[1], p[0])
    p[2] = torch.where(lr_ok, p[2], p[3])
    p[3] = torch.where(lr_ok, p[3], p[2])
    apart = (iw <= 0) | (ih <= 0)
    if kind == "giou":
        hull = [(c_g * du - union * dc) / (c_g * c_g) for du, dc in zip(d_union, d_hull)]
        p = [torch.where(apart, h, torch.where(c_g > 0, q + h, q)) for q, h in zip(p, hull)]

    dxywh = [p[2] + p[3], p[0] + p[1], p[3] - p[2], p[1] - p[0]]

    if kind in ("diou", "ciou"):
        # the enclosing box's diagonal c^2 and the centre distance term -d(S/C)
        cw = torch.maximum(px + pw / 2, t_r) - torch.minimum(px - pw / 2, t_l)
        ch = torch.maximum(py + ph / 2, t_b) - torch.minimum(py - ph / 2, t_t)
        c2 = cw * cw + ch * ch
        one = torch.ones_like(px)
        dcw_dx = torch.where(p_r > t_r, one, zero) - torch.where(p_l < t_l, one, zero)
        dcw_dw = torch.where(p_r > t_r, 0.5 * one, zero) - torch.where(p_l < t_l, -0.5 * one, zero)
        dch_dy = torch.where(p_b > t_b, one, zero) - torch.where(p_t < t_t, one, zero)
        dch_dh = torch.where(p_b > t_b, 0.5 * one, zero) - torch.where(p_t < t_t, -0.5 * one, zero)
        dist = [(2 * (tx - px) * c2 - 2 * cw * dcw_dx * dist2) / (c2 * c2),
                (2 * (ty - py) * c2 - 2 * ch * dch_dy * dist2) / (c2 * c2),
                2 * cw * dcw_dw * dist2 / (c2 * c2),
                2 * ch * dch_dh * dist2 / (c2 * c2)]
        if kind == "ciou":
            gap = torch.atan(tw / th) - torch.atan(pw / ph)
            ar_loss = 4 / math.pi ** 2 * gap * gap
            alpha = ar_loss / (1 - inter / union + ar_loss + 0.000001)
            dist[2] = dist[2] + alpha * 8 / math.pi ** 2 * gap * ph
            dist[3] = dist[3] + alpha * -8 / math.pi ** 2 * gap * pw
        dxywh = [torch.where(apart, d, torch.where(c2 > 0, q + d, q)) for q, d in zip(dxywh, dist)]
    return torch.stack(dxywh, -1)


def box_iou_loss_value(pred: Tensor, truth: Tensor, kind: str) -> Tensor:
    """1 - the IoU variant per row, [N] (the reported loss; its gradient is not darknet's)."""
    a, b = box_convert(pred, "cxcywh", "xyxy"), box_convert(truth, "cxcywh", "xyxy")
    fn = {"ciou": complete_box_iou_loss, "diou": distance_box_iou_loss, "giou": generalized_box_iou_loss}.get(kind)
    return fn(a, b, reduction="none") if fn else 1 - box_iou(a, b).diagonal()


class DarknetBoxLoss(torch.autograd.Function):
    """Forward: ``iou_normalizer * (1 - IoU variant)`` per assigned (truth, anchor, cell) row.
    Backward: ``-delta / divisor`` on the raw (t_x, t_y, t_w, t_h), delta as ``delta_yolo_box`` writes it.

    Args of ``apply``:
        raw: [N, 4] raw outputs of the assigned rows (before sigmoid/exp).
        cell: [N, 2] grid column, row of each.
        anchor: [N, 2] anchor w, h as fractions of the network input.
        truth: [N, 4] truth (cx, cy, w, h), fractions of the network input.
        grid: (grid width, grid height) of the layer.
        divisor: [N] what darknet divides the cell's box deltas by (``averages_yolo_deltas``), 1 if none.
        kind, scale_x_y, iou_normalizer, max_delta, new_coords: the [yolo] layer's options.
    """

    @staticmethod
    def forward(ctx, raw: Tensor, cell: Tensor, anchor: Tensor, truth: Tensor, grid: tuple[int, int],
                divisor: Tensor, kind: str, scale_x_y: float, iou_normalizer: float, max_delta: float,
                new_coords: bool, max_log_wh: float) -> Tensor:
        size = raw.new_tensor(grid)
        if new_coords:   # the conv already applied logistic (darknet's new_coords=1)
            xy, wh_factor = raw[:, :2], torch.ones_like(raw[:, 2:])
            wh = 4 * raw[:, 2:] ** 2 * anchor
        else:
            xy = raw[:, :2].sigmoid()
            wh_factor = raw[:, 2:].clamp(max=max_log_wh).exp()     # exp(t): darknet's only w, h factor
            wh = wh_factor * anchor
        xy = xy * scale_x_y - (scale_x_y - 1) / 2
        pred = torch.cat(((cell + xy) / size, wh), -1)
        # darknet: "avoid nan in dx_box_iou"
        pred_fixed = torch.cat((pred[:, :2], torch.where(pred[:, 2:] == 0, torch.ones_like(wh), pred[:, 2:])), -1)
        delta = dx_box_iou(pred_fixed, truth, kind)
        delta = delta * torch.cat((torch.ones_like(xy), wh_factor), -1) * iou_normalizer
        delta = torch.nan_to_num(delta, nan=0.0, posinf=0.0, neginf=0.0)
        if max_delta != math.inf:
            delta = delta.clamp(-max_delta, max_delta)
        ctx.save_for_backward(delta / divisor[:, None])
        return iou_normalizer * box_iou_loss_value(pred, truth, kind)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (delta,) = ctx.saved_tensors
        return (-delta * grad_out[:, None],) + (None,) * 11
