"""Darknet-style detection data augmentation and resizing on tensors.

Two darknets, two ``load_data_detection`` (``src/data.c``), chosen by ``AugmentConfig.augmentation``
(the variant's ``arch.augmentation``). ``pjreddie`` (YOLOv3, arXiv:1804.02767; public domain / YOLO
licence), as at the YOLOv3 release (commit e84933bf, 2018-03-25, the code its weights were trained
with): the aspect ratio jittered by ``jitter``, the whole image resized by a scale uniform in
[.25, 2] (the longer side against the network's) and placed at a random offset on a grey (.5)
canvas (``place_image``: nearest pixel, cut where it leaves the canvas), colour distorted on the
whole canvas (``random_distort_image``), flipped half of the time, boxes moved by ``correct_boxes``
and dropped below .001 of the canvas (``fill_truth_detection``). pjreddie's later HEAD fixed the
scale at 1 (2018-08-03) and samples bilinearly (2018-03-28); the release is what YOLOv3 trained on.

``alexeyab`` (the default; YOLOv4, arXiv:2004.10934, Sec. 3.3; YOLO licence), re-implemented on
torch tensors:

* jitter: crop a box whose sides move by up to ``jitter`` x the image size in each direction
  (outside the image is grey), then stretch it to the network size (scale and aspect jitter);
* flip: horizontal, probability 1/2 (``flip=1`` in [net]);
* HSV: hue shift uniform in +-``hue``, saturation and exposure scaled by a factor in
  [1, s] or its inverse, each with probability 1/2 (darknet's rand_scale);
* mosaic (``mosaic=1`` in [net]): four jittered images fill the four rectangles around a random
  cut point.

Evaluation resizes as darknet's detector evaluation (its own ``resize_image``; stretch, or
letterbox) and records how, so predictions can be mapped back onto the original image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from replicate.data.augment_random import AugmentationRandom

GREY = 0.5            # darknet fills outside the image with .5
MIN_BOX_PX = 2.0      # boxes thinner than this after cropping are dropped (no usable target)
ALEXEYAB, PJREDDIE = "alexeyab", "pjreddie"   # whose load_data_detection (see the module docstring)
AUGMENTATIONS = (ALEXEYAB, PJREDDIE)
PJREDDIE_SCALE = (0.25, 2.0)   # pjreddie data.c at the YOLOv3 release: scale = rand_uniform(.25, 2)
PJREDDIE_MIN_BOX = 0.001       # fill_truth_detection drops w or h below .001 of the canvas


@dataclass
class AugmentConfig:
    """Augmentation strengths; defaults are darknet's, values come from the cfg (or the recipe)."""

    jitter: float = 0.2
    hue: float = 0.0
    saturation: float = 1.0
    exposure: float = 1.0
    flip: bool = True
    mosaic: float = 0.0          # probability of a mosaic sample
    letter_box: bool = False
    augmentation: str = ALEXEYAB  # whose load_data_detection: ALEXEYAB or PJREDDIE

    @classmethod
    def from_cfg(cls, net: dict, last_yolo: dict, overrides: Optional[dict] = None,
                 augmentation: str = ALEXEYAB) -> "AugmentConfig":
        """From [net] (hue, saturation, exposure, flip, mosaic, letter_box) and the last [yolo]'s
        jitter (darknet reads the jitter of the network's last layer)."""
        values: dict[str, Any] = dict(jitter=float(last_yolo.get("jitter", 0.2)), hue=float(net.get("hue", 0.0)),
                      saturation=float(net.get("saturation", 1.0)), exposure=float(net.get("exposure", 1.0)),
                      flip=bool(net.get("flip", 1)), mosaic=float(bool(net.get("mosaic", 0))),
                      letter_box=bool(net.get("letter_box", 0)), augmentation=augmentation)
        values.update(overrides or {})
        return cls(**values)


class _Random(AugmentationRandom):
    """Darknet's draws on the dataset's augmentation stream."""

    def scale(self, s: float) -> float:
        """darknet rand_scale: a factor in [1, s], inverted half of the time."""
        factor = self.uniform(1.0, max(s, 1.0))
        return factor if self.uniform(0, 1) < 0.5 else 1.0 / factor


def crop_resize(image: torch.Tensor, boxes: torch.Tensor, rect: tuple[float, float, float, float],
                out_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop ``rect`` = (x0, y0, x1, y1) (may leave the image: grey there), stretch to ``out_hw``."""
    _, h, w = image.shape
    x0, y0, x1, y1 = rect
    theta = torch.tensor([[(x1 - x0) / w, 0, (x0 + x1) / w - 1],
                          [0, (y1 - y0) / h, (y0 + y1) / h - 1]], dtype=image.dtype)
    grid = F.affine_grid(theta[None], [1, 3, *out_hw], align_corners=False)
    out = F.grid_sample(image[None] - GREY, grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False)[0] + GREY
    sx, sy = out_hw[1] / (x1 - x0), out_hw[0] / (y1 - y0)
    boxes = boxes.clone()
    boxes[:, 0::2] = ((boxes[:, 0::2] - x0) * sx).clamp(0, out_hw[1])
    boxes[:, 1::2] = ((boxes[:, 1::2] - y0) * sy).clamp(0, out_hw[0])
    return out, boxes


# How a jittered crop becomes a training image: (image, boxes xyxy, crop rect, out (h, w)) ->
# (image, boxes). Darknet stretches the crop to the network size (crop_resize).
Resize = Callable[[torch.Tensor, torch.Tensor, tuple[float, float, float, float], tuple[int, int]],
                  tuple[torch.Tensor, torch.Tensor]]


def distort_colour(image: torch.Tensor, rng: _Random, cfg: AugmentConfig) -> torch.Tensor:
    """Hue shift, saturation and exposure scaling (darknet random_distort_image)."""
    if cfg.hue > 0:
        image = TF.adjust_hue(image, rng.uniform(-cfg.hue, cfg.hue))
    if cfg.saturation != 1.0:
        # HSV saturation x f with value kept: each channel moves from the max by the factor
        value = image.max(0, keepdim=True).values
        image = (value - (value - image) * rng.scale(cfg.saturation)).clamp(min=0)
    if cfg.exposure != 1.0:
        image = image * rng.scale(cfg.exposure)   # HSV value x f == RGB x f
    return image.clamp(0, 1)


def _keep_boxes(target: dict, boxes: torch.Tensor, keep: Optional[torch.Tensor] = None) -> dict:
    """``target`` with ``boxes``, less those ``keep`` drops (default: thinner than MIN_BOX_PX)."""
    if keep is None:
        keep = ((boxes[:, 2] - boxes[:, 0]) >= MIN_BOX_PX) & ((boxes[:, 3] - boxes[:, 1]) >= MIN_BOX_PX)
    out = {k: v for k, v in target.items() if k not in ("masks",)}
    out["boxes"] = boxes[keep]
    for key in ("labels", "area", "iscrowd"):
        if key in target:
            out[key] = target[key][keep]
    return out


def jitter_item(image: torch.Tensor, target: dict, out_hw: tuple[int, int], rng: _Random,
                cfg: AugmentConfig, resize: Resize = crop_resize) -> tuple[torch.Tensor, dict]:
    """One image: jittered crop stretched to ``out_hw`` (by ``resize``), flip, colour."""
    _, h, w = image.shape
    dw, dh = cfg.jitter * w, cfg.jitter * h
    left, right = rng.uniform(-dw, dw), rng.uniform(-dw, dw)
    top, bottom = rng.uniform(-dh, dh), rng.uniform(-dh, dh)
    image, boxes = resize(image, target["boxes"], (left, top, w - right, h - bottom), out_hw)
    if cfg.flip and rng.uniform(0, 1) < 0.5:
        image = image.flip(-1)
        boxes = torch.stack((out_hw[1] - boxes[:, 2], boxes[:, 1], out_hw[1] - boxes[:, 0], boxes[:, 3]), 1)
    return distort_colour(image, rng, cfg), _keep_boxes(target, boxes)


def mosaic(items: list[tuple[torch.Tensor, dict]], size: int, rng: _Random,
           cfg: AugmentConfig, resize: Resize = crop_resize) -> tuple[torch.Tensor, dict]:
    """Four jittered images around a random cut point (YOLOv4 Sec. 3.3); target of the first."""
    cx, cy = int(rng.uniform(0.3, 0.7) * size), int(rng.uniform(0.3, 0.7) * size)
    canvas = torch.full((3, size, size), GREY)
    boxes, labels = [], []
    for (image, target), (x0, y0, x1, y1) in zip(items, [(0, 0, cx, cy), (cx, 0, size, cy),
                                                        (0, cy, cx, size), (cx, cy, size, size)]):
        piece, t = jitter_item(image, target, (y1 - y0, x1 - x0), rng, cfg, resize)
        canvas[:, y0:y1, x0:x1] = piece
        boxes.append(t["boxes"] + torch.tensor([x0, y0, x0, y0], dtype=torch.float32))
        labels.append(t["labels"])
    out = {"image_id": items[0][1]["image_id"], "boxes": torch.cat(boxes), "labels": torch.cat(labels)}
    out["iscrowd"] = torch.zeros(len(out["labels"]), dtype=torch.int64)
    return canvas, _keep_boxes(out, out["boxes"])


@dataclass(frozen=True)
class CanvasPlacement:
    """pjreddie's draw: the whole image resized to ``nw`` x ``nh`` with its corner at (``dx``,
    ``dy``) on the canvas, in float32 as darknet holds them (``place_image`` truncates each to int)."""

    nw: np.float32
    nh: np.float32
    dx: np.float32
    dy: np.float32


def _rand_uniform(rng: AugmentationRandom, low: float | np.floating, high: float | np.floating) -> np.float32:
    """darknet ``rand_uniform`` (utils.c) in float32: reversed bounds are swapped, u*(max-min)+min."""
    low32, high32 = np.float32(low), np.float32(high)
    if high32 < low32:
        low32, high32 = high32, low32
    return np.float32(rng.uniform(0.0, 1.0)) * (high32 - low32) + low32


def draw_placement(rng: AugmentationRandom, width: int, height: int, out_hw: tuple[int, int],
                   jitter: float) -> CanvasPlacement:
    """pjreddie ``load_data_detection``'s geometry draws: aspect ratio, scale, offset."""
    w, h = np.float32(out_hw[1]), np.float32(out_hw[0])
    dw, dh = np.float32(jitter) * np.float32(width), np.float32(jitter) * np.float32(height)
    jittered_w = np.float32(width) + _rand_uniform(rng, -dw, dw)
    new_ar = jittered_w / (np.float32(height) + _rand_uniform(rng, -dh, dh))
    scale = _rand_uniform(rng, *PJREDDIE_SCALE)
    if new_ar < 1:
        nh = scale * h
        nw = nh * new_ar
    else:
        nw = scale * w
        nh = nw / new_ar
    return CanvasPlacement(nw, nh, _rand_uniform(rng, 0, w - nw), _rand_uniform(rng, 0, h - nh))


def place_image(image: torch.Tensor, boxes: torch.Tensor, placement: CanvasPlacement,
                out_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """pjreddie ``place_image`` (image.c, YOLOv3 release) on a grey canvas, and the boxes (xyxy,
    source pixels) as ``correct_boxes`` moves them, before its flip and clamp: fractions of the
    canvas, ``left * (nw / w) - (-dx / w)``. The image lands at the truncated integer size and
    offset (C's float-to-int arguments), each pixel the source's at ``int(x / nw_int * W)``."""
    _, height, width = image.shape
    nw, nh, dx, dy = (int(v) for v in (placement.nw, placement.nh, placement.dx, placement.dy))
    cols = ((torch.arange(nw, dtype=torch.float32) / nw) * width).to(torch.long)
    rows = ((torch.arange(nh, dtype=torch.float32) / nh) * height).to(torch.long)
    placed = image.index_select(1, rows).index_select(2, cols)
    canvas = image.new_full((image.shape[0], *out_hw), GREY)
    x0, x1 = max(dx, 0), min(dx + nw, out_hw[1])
    y0, y1 = max(dy, 0), min(dy + nh, out_hw[0])
    if x1 > x0 and y1 > y0:   # set_pixel writes only inside the canvas
        canvas[:, y0:y1, x0:x1] = placed[:, y0 - dy:y1 - dy, x0 - dx:x1 - dx]
    w, h = np.float32(out_hw[1]), np.float32(out_hw[0])
    # float32 values as Python floats (exact): the tensor arithmetic stays float32
    sx, sy = float(placement.nw / w), float(placement.nh / h)
    shift_x, shift_y = float(-placement.dx / w), float(-placement.dy / h)
    relative = boxes.to(torch.float32) / torch.tensor([width, height, width, height], dtype=torch.float32)
    moved = torch.stack((relative[:, 0] * sx - shift_x, relative[:, 1] * sy - shift_y,
                         relative[:, 2] * sx - shift_x, relative[:, 3] * sy - shift_y), 1)
    return canvas, moved


# How pjreddie's placement becomes the canvas: (image, boxes xyxy, placement, out (h, w)) ->
# (canvas, boxes as fractions of the canvas before flip and clamp); place_image by default.
Place = Callable[[torch.Tensor, torch.Tensor, CanvasPlacement, tuple[int, int]], tuple[torch.Tensor, torch.Tensor]]


def flip_and_clamp(relative: torch.Tensor, flip: bool) -> torch.Tensor:
    """The rest of pjreddie ``correct_boxes``: left = 1 - right on a flip, then every side
    constrained to [0, 1]."""
    if flip:
        relative = torch.stack((1 - relative[:, 2], relative[:, 1], 1 - relative[:, 0], relative[:, 3]), 1)
    return relative.clamp(0, 1)


def pjreddie_item(image: torch.Tensor, target: dict, out_hw: tuple[int, int], rng: _Random,
                  cfg: AugmentConfig, place: Place = place_image) -> tuple[torch.Tensor, dict]:
    """One image as pjreddie ``load_data_detection`` makes it: placed, colour on the whole canvas,
    flipped half of the time (pjreddie has no flip switch), boxes in canvas pixels."""
    _, height, width = image.shape
    placement = draw_placement(rng, width, height, out_hw, cfg.jitter)
    canvas, relative = place(image, target["boxes"], placement, out_hw)
    canvas = distort_colour(canvas, rng, cfg)
    flip = rng.uniform(0, 1) < 0.5
    if flip:
        canvas = canvas.flip(-1)
    relative = flip_and_clamp(relative, flip)
    sides = relative[:, 2:] - relative[:, :2]   # fill_truth_detection: w or h below .001 is no truth
    keep = (sides >= PJREDDIE_MIN_BOX).all(1)
    size = torch.tensor([out_hw[1], out_hw[0], out_hw[1], out_hw[0]], dtype=torch.float32)
    return canvas, _keep_boxes(target, relative * size, keep)


class YoloTrainSet(Dataset):
    """Training items: jittered/flipped/colour-distorted (or mosaic) images at ``size`` x ``size``.

    Args:
        base: A detection dataset of (image [3,H,W] in [0,1], target with boxes xyxy and labels).
        size: Network input size.
        cfg: Augmentation strengths.
        seed: Seed of the augmentation draws.

    Attributes:
        resize: How a jittered crop becomes the training image (:data:`Resize`, AlexeyAB's
            augmentation); darknet's stretch by default, replaceable per dataset.
        place: How pjreddie's placement becomes the canvas (:data:`Place`); its place_image
            by default, replaceable per dataset.
    """

    resize = staticmethod(crop_resize)
    place = staticmethod(place_image)

    def __init__(self, base: Any, size: int, cfg: AugmentConfig, seed: int):
        self.base, self.size, self.cfg, self.rng = base, size, cfg, _Random(seed)

    @property
    def augmentation_random(self) -> AugmentationRandom:
        return self.rng

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        if self.cfg.mosaic > 0 and self.rng.uniform(0, 1) < self.cfg.mosaic:
            others = [self.rng.index(len(self.base)) for _ in range(3)]
            return mosaic([self.base[i] for i in [index, *others]], self.size, self.rng, self.cfg, self.resize)
        image, target = self.base[index]
        if self.cfg.augmentation == PJREDDIE:
            return pjreddie_item(image, target, (self.size, self.size), self.rng, self.cfg, self.place)
        return jitter_item(image, target, (self.size, self.size), self.rng, self.cfg, self.resize)


def darknet_resize(image: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Darknet's ``resize_image`` (src/image.c), in float32 as it computes: a horizontal then a
    vertical linear pass with source position ``i * (in - 1) / (out - 1)``; the last column is
    copied, and the last row takes only its ``(1 - dy)`` share (darknet skips the second term
    there, which matters when float rounding puts that row's source just below the last one).
    """
    _, in_h, in_w = image.shape
    image = image.float()
    part = _darknet_pass(image, in_w, width, axis=2, last_whole=True)
    return _darknet_pass(part, in_h, height, axis=1, last_whole=False)


def _darknet_pass(image: torch.Tensor, size_in: int, size_out: int, axis: int, last_whole: bool) -> torch.Tensor:
    """One of ``darknet_resize``'s passes along ``axis`` (2: columns, 1: rows)."""
    index = torch.arange(size_out)
    if size_in == 1 or size_out == 1:
        # a one-pixel source is copied; a one-pixel output takes the last column (a one-pixel
        # output row divides by zero in darknet: the first row here)
        pick = size_in - 1 if last_whole else 0
        return image.index_select(axis, torch.full((size_out,), pick, dtype=torch.long))
    scale = torch.tensor(size_in - 1, dtype=torch.float32) / torch.tensor(size_out - 1, dtype=torch.float32)
    source = index.to(torch.float32) * scale
    low = source.to(torch.long)                       # C's (int) cast: truncation, source >= 0
    frac = source - low.to(torch.float32)
    high = (low + 1).clamp(max=size_in - 1)
    shape = [1, 1, 1]
    shape[axis] = size_out
    frac = frac.view(shape)
    first = (1 - frac) * image.index_select(axis, low)
    second = frac * image.index_select(axis, high)
    last = index == size_out - 1
    if last_whole:   # the last column: the source's last pixel
        whole = image.index_select(axis, torch.full((size_out,), size_in - 1, dtype=torch.long))
        return torch.where(last.view(shape), whole, first + second)
    return torch.where(last.view(shape), first, first + second)   # the last row: its first term only


def letterbox_geometry(width: int, height: int, size: int) -> tuple[int, int]:
    """Darknet's letterbox size (``letterbox_image``, ``correct_yolo_boxes``): the side that
    limits fills the network, the other is scaled in integer arithmetic (truncated)."""
    if size / width < size / height:
        return size, (height * size) // width
    return (width * size) // height, size


class ResizeForEval:
    """Resize to the network size as darknet's detector evaluation does; ``target["resize"]``
    records how.

    Stretch (AlexeyAB's default): ``resize_image`` to the network size. Letterbox (pjreddie's
    ``validate_detector`` always, AlexeyAB's with ``letter_box``): ``letterbox_image``, the
    image resized to :func:`letterbox_geometry` and embedded at the whole-pixel offset
    ``(size - new) / 2`` on grey 0.5. ``resize`` = (scale x, scale y, offset x, offset y, original
    width, original height), with the offset darknet's ``correct_yolo_boxes`` maps back with:
    ``(size - new) / 2.`` in floating point (half a pixel off the embedding when odd, as darknet).
    """

    def __init__(self, size: int, letter_box: bool = False):
        self.size, self.letter_box = size, letter_box

    def __call__(self, image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        _, h, w = image.shape
        s = self.size
        nw, nh = letterbox_geometry(w, h, s) if self.letter_box else (s, s)
        if (nh, nw) != (h, w):
            image = darknet_resize(image, nw, nh)
        if (nh, nw) != (s, s):
            ox, oy = (s - nw) // 2, (s - nh) // 2
            canvas = image.new_full((image.shape[0], s, s), GREY)
            canvas[:, oy:oy + nh, ox:ox + nw] = image
            image = canvas
        sx, sy = nw / w, nh / h
        back_x, back_y = (s - nw) / 2, (s - nh) / 2
        target = {k: v for k, v in target.items() if k != "masks"}
        boxes = target["boxes"].clone()
        boxes[:, 0::2] = boxes[:, 0::2] * sx + back_x
        boxes[:, 1::2] = boxes[:, 1::2] * sy + back_y
        target["boxes"] = boxes
        target["resize"] = torch.tensor([sx, sy, back_x, back_y, w, h], dtype=torch.float32)
        return image, target


def to_original(boxes: torch.Tensor, resize: torch.Tensor) -> torch.Tensor:
    """Boxes in network pixels -> boxes on the original image (clipped to it)."""
    sx, sy, ox, oy, w, h = resize.tolist()
    out = boxes.clone()
    out[:, 0::2] = ((out[:, 0::2] - ox) / sx).clamp(0, w)
    out[:, 1::2] = ((out[:, 1::2] - oy) / sy).clamp(0, h)
    return out
