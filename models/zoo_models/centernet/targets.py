"""CenterNet targets, losses and decoding: boxes <-> centre heatmaps, sizes and offsets.

Paper: Zhou, Wang, Krähenbühl, "Objects as Points", 2019 (arXiv:1904.07850), Sec. 3-4.
Reference implementation: xingyizhou/CenterNet (MIT): ``src/lib/utils/image.py``
(``gaussian_radius``, ``gaussian2D``, ``draw_umich_gaussian``), ``src/lib/datasets/sample/ctdet.py``
(target encoding), ``src/lib/models/losses.py`` (``_neg_loss``, ``RegL1Loss``, the focal loss
itself from CornerNet, BSD-3-Clause) and ``src/lib/models/decode.py`` (``_nms``, ``_topk``,
``ctdet_decode``). The functions here follow those, in torch instead of numpy, batched where the
reference loops; each docstring names the reference function it stands for.

Coordinates: everything here is in *output* (heatmap) cells unless a name says otherwise; the
Task divides input pixels by the down ratio (4) before encoding and multiplies after decoding.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_convert

MIN_OVERLAP = 0.7        # reference opts/ctdet.py: gaussian_radius(..., min_overlap=0.7)
SIGMOID_CLAMP = 1e-4     # reference models/utils.py _sigmoid: clamp to [1e-4, 1 - 1e-4]


def gaussian_radius(height: float, width: float, min_overlap: float = MIN_OVERLAP) -> float:
    """Radius of the centre gaussian for a box (reference ``gaussian_radius``, from CornerNet).

    CornerNet's three corner-shift cases (both corners inside, both outside, one of each) as
    quadratics, taken as the reference writes them: ``(b + sqrt(b^2 - 4ac)) / 2`` in all three,
    not the exact roots ``(b -/+ sqrt(...)) / (2a)``. That form is in CornerNet and in the
    CenterNet code its forks carry (e.g. jkznst/CenterNet, TheLittleBee/CenterNet
    ``src/lib/utils/image.py``), i.e. what the MODEL_ZOO models were trained with; a stored
    revision of xingyizhou/CenterNet (b498e30) has the exact roots, which give radii about 3x
    smaller. In effect r3 = 2.8x the exact third root decides.
    """
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2 ** 2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def draw_gaussian(heatmap: Tensor, cx: int, cy: int, radius: int) -> None:
    """Max-blends a 2-D gaussian peaked at cell (cx, cy) into ``heatmap`` [H, W] in place.

    Reference ``draw_umich_gaussian``: a (2r+1)^2 window, sigma = (2r+1)/6, values below
    float64 eps times the peak set to 0, element-wise maximum with what is already drawn.
    """
    height, width = heatmap.shape
    diameter = 2 * radius + 1
    sigma = diameter / 6
    left, right = min(cx, radius), min(width - cx, radius + 1)
    top, bottom = min(cy, radius), min(height - cy, radius + 1)
    ys = torch.arange(-top, bottom, dtype=torch.float64)[:, None]
    xs = torch.arange(-left, right, dtype=torch.float64)[None, :]
    gauss = torch.exp(-(xs * xs + ys * ys) / (2 * sigma * sigma))
    gauss[gauss < torch.finfo(torch.float64).eps] = 0  # the peak is 1, so eps * max == eps
    window = heatmap[cy - top:cy + bottom, cx - left:cx + right]
    torch.maximum(window, gauss.to(heatmap.dtype), out=window)


def encode(boxes: Tensor, channels: Tensor, num_classes: int, out_size: tuple[int, int],
           max_objs: int, radius_of: Callable[[float, float], float] = gaussian_radius) -> dict[str, Tensor]:
    """Training targets of one image (reference ``CTDetDataset.__getitem__``).

    Args:
        boxes: float[N, 4] x1, y1, x2, y2 in output cells.
        channels: int64[N] heatmap channel (0..num_classes-1) of each box.
        num_classes: Heatmap channels.
        out_size: (height, width) of the output map.
        max_objs: Length of the per-object arrays (objects beyond it are dropped, as in the
            reference's ``min(num_objs, max_objs)``).
        radius_of: The gaussian radius of a box from its (height, width) in cells; default the
            reference's :func:`gaussian_radius` (CornerNet's formula).

    Returns:
        ``hm`` float[C, H, W]; ``wh`` and ``reg`` float[max_objs, 2] (box size, sub-cell offset
        of the centre); ``ind`` int64[max_objs] flat index y * W + x of the centre cell;
        ``mask`` float[max_objs], 1 for real objects.
    """
    out_h, out_w = out_size
    hm = torch.zeros(num_classes, out_h, out_w)
    wh, reg = torch.zeros(max_objs, 2), torch.zeros(max_objs, 2)
    ind, mask = torch.zeros(max_objs, dtype=torch.int64), torch.zeros(max_objs)
    # The reference clips to [0, output - 1] before measuring the box.
    clipped = boxes.clone()
    clipped[:, 0::2] = clipped[:, 0::2].clamp(0, out_w - 1)
    clipped[:, 1::2] = clipped[:, 1::2].clamp(0, out_h - 1)
    for k, (box, channel) in enumerate(zip(clipped[:max_objs].tolist(), channels[:max_objs].tolist())):
        w, h = box[2] - box[0], box[3] - box[1]
        if h <= 0 or w <= 0:
            continue
        radius = max(0, int(radius_of(math.ceil(h), math.ceil(w))))
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        ix, iy = int(cx), int(cy)  # reference: ct.astype(np.int32), a floor for ct >= 0
        draw_gaussian(hm[channel], ix, iy, radius)
        wh[k] = torch.tensor([w, h])
        reg[k] = torch.tensor([cx - ix, cy - iy])
        ind[k] = iy * out_w + ix
        mask[k] = 1.0
    return {"hm": hm, "wh": wh, "reg": reg, "ind": ind, "mask": mask}


def clamped_sigmoid(logits: Tensor) -> Tensor:
    """Reference ``_sigmoid``: keeps log(p) and log(1 - p) of the focal loss finite."""
    return torch.clamp(logits.sigmoid(), min=SIGMOID_CLAMP, max=1 - SIGMOID_CLAMP)


def focal_loss(pred: Tensor, gt: Tensor) -> Tensor:
    """Penalty-reduced pixel-wise focal loss, paper Eq. 1 (reference ``_neg_loss``).

    Args:
        pred: Probabilities in (0, 1), [B, C, H, W].
        gt: Gaussian-splatted targets, 1 exactly at object centres.
    """
    pos = gt.eq(1).float()
    neg = 1.0 - pos  # gt.lt(1): the heatmap never exceeds 1
    neg_weights = torch.pow(1 - gt, 4)
    pos_loss = (torch.log(pred) * torch.pow(1 - pred, 2) * pos).sum()
    neg_loss = (torch.log(1 - pred) * torch.pow(pred, 2) * neg_weights * neg).sum()
    num_pos = pos.sum()
    # No object in the batch: only the negatives count (the reference's num_pos == 0 branch).
    return torch.where(num_pos > 0, -(pos_loss + neg_loss) / num_pos.clamp(min=1), -neg_loss)


def gather_feat(feat: Tensor, ind: Tensor) -> Tensor:
    """Values of ``feat`` [B, D, H, W] at flat indices ``ind`` [B, M] -> [B, M, D].

    Reference ``_transpose_and_gather_feat``.
    """
    batch, dim = feat.shape[:2]
    flat = feat.permute(0, 2, 3, 1).reshape(batch, -1, dim)
    return flat.gather(1, ind.unsqueeze(2).expand(-1, -1, dim))


def reg_l1_loss(output: Tensor, mask: Tensor, ind: Tensor, target: Tensor) -> Tensor:
    """L1 on the object centres only, averaged over objects and both coordinates.

    Reference ``RegL1Loss`` (sum of |pred - target| over masked entries / (mask entries + 1e-4)).
    """
    pred = gather_feat(output, ind)
    mask = mask.unsqueeze(2).expand_as(pred)
    loss = F.l1_loss(pred * mask, target * mask, reduction="sum")
    return loss / (mask.sum() + 1e-4)


def decode(hm_logits: Tensor, wh: Tensor, reg: Tensor, k: int = 100
           ) -> tuple[Tensor, Tensor, Tensor]:
    """Top-k peaks of the heatmap as boxes (reference ``ctdet_decode`` with ``_nms``).

    A peak is a cell equal to its 3x3 max-pool (the paper's NMS replacement, Sec. 4). One
    global top-k over C*H*W gives the same detections as the reference's per-class top-k
    followed by a top-k over the C*K candidates.

    Returns:
        scores float[B, K], channels int64[B, K], boxes float[B, K, 4] (x1, y1, x2, y2 in output
        cells).
    """
    heat = hm_logits.sigmoid()
    peaks = F.max_pool2d(heat, 3, stride=1, padding=1)
    heat = heat * (peaks == heat).float()
    batch, _, height, width = heat.shape
    scores, inds = heat.reshape(batch, -1).topk(min(k, heat[0].numel()))
    channels = torch.div(inds, height * width, rounding_mode="floor")
    cells = inds % (height * width)
    ys = torch.div(cells, width, rounding_mode="floor").float()
    xs = (cells % width).float()
    offset, size = gather_feat(reg, cells), gather_feat(wh, cells)
    centres = torch.stack([xs + offset[..., 0], ys + offset[..., 1], size[..., 0], size[..., 1]], dim=-1)
    return scores, channels, box_convert(centres, "cxcywh", "xyxy")
