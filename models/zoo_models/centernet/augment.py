"""CenterNet's training augmentation as the reference does it (xingyizhou/CenterNet
``src/lib/datasets/sample/ctdet.py`` and ``utils/image.py`` color_aug), on torch tensors.

Per image: a random scale of the longer side (0.6-1.3 in steps of 0.1) and a random centre kept
``_get_border(128)`` pixels inside the image, a horizontal flip with probability 1/2, one affine
warp to the input size (zeros outside, bilinear), then colour: brightness, contrast and
saturation (each 1 + U(-0.4, 0.4), in a random order) and PCA lighting noise (N(0, 0.1) along
the COCO eigenvectors), unclipped, before the mean/std normalisation. Draws come from the job's
checkpointed augmentation stream, so a resumed job draws what the uninterrupted one would have.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from replicate.data.augment_random import AugmentationRandom

SCALES = tuple(round(0.6 + 0.1 * i, 1) for i in range(8))   # np.arange(0.6, 1.4, 0.1)
BORDER = 128
COLOUR_VAR = 0.4
LIGHTING_STD = 0.1
# src/lib/datasets/dataset/coco.py: PCA of the COCO pixels, channels in BGR order (cv2.imread)
EIG_VAL = (0.2141788, 0.01817699, 0.00341571)
EIG_VEC = ((-0.58752847, -0.69563484, 0.41340352),
           (-0.5832747, 0.00994535, -0.81221408),
           (-0.56089297, 0.71832671, 0.41158938))
GREY_RGB = (0.299, 0.587, 0.114)   # cv2 COLOR_BGR2GRAY's weights of R, G, B


def border(margin: int, size: int) -> int:
    """The reference's ``_get_border``: ``margin`` halved until the centre range is not empty."""
    i = 1
    while size - margin // i <= margin // i:
        i *= 2
    return margin // i


class RandomScaleCropColour:
    """The reference's ctdet training sample geometry and colour (see the module docstring).

    Args:
        size: The square input size (512 for COCO).
        seed: Seed of the job's augmentation stream.
        colour: Colour and lighting noise on (the reference's default; ``--no_color_aug`` off).
    """

    def __init__(self, size: int, seed: int, colour: bool = True):
        self.size, self.colour = size, colour
        self.random = AugmentationRandom(seed)

    def __call__(self, image: torch.Tensor, target: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        g = self.random.get()
        _, height, width = image.shape
        scale = max(height, width) * SCALES[int(torch.randint(len(SCALES), (), generator=g))]
        wb, hb = border(BORDER, width), border(BORDER, height)
        cx = float(torch.randint(wb, width - wb, (), generator=g))
        cy = float(torch.randint(hb, height - hb, (), generator=g))
        flip = torch.rand((), generator=g).item() < 0.5
        image, target = self.apply(image, target, scale, cx, cy, flip)
        if self.colour:
            order = torch.randperm(3, generator=g).tolist()
            alphas = [1 + COLOUR_VAR * (2 * torch.rand((), generator=g).item() - 1) for _ in range(3)]
            image = colour_noise(image, order, alphas, torch.randn(3, generator=g) * LIGHTING_STD)
        return image, target

    def apply(self, image: torch.Tensor, target: dict[str, Any], scale: float, cx: float, cy: float,
              flip: bool) -> tuple[torch.Tensor, dict[str, Any]]:
        """The geometry for given draws: flip (the centre flips with the image), then the warp."""
        width = image.shape[-1]
        boxes = target["boxes"].clone()
        if flip:
            image, cx = image.flip(-1), width - cx - 1
            boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]] - 1
        factor = self.size / scale
        boxes[:, 0::2] = (boxes[:, 0::2] - cx) * factor + self.size / 2
        boxes[:, 1::2] = (boxes[:, 1::2] - cy) * factor + self.size / 2
        return self.warp(image, cx, cy, scale), {**target, "boxes": boxes}

    def warp(self, image: torch.Tensor, cx: float, cy: float, scale: float) -> torch.Tensor:
        """cv2.warpAffine of the reference's transform: centre (cx, cy) to the canvas centre, the
        scale's length to the canvas side; pixel centres at whole coordinates, zeros outside."""
        _, height, width = image.shape
        step = scale / self.size
        pixels = torch.arange(self.size, dtype=torch.float32) - self.size / 2
        xs = (cx + pixels * step) * 2 / max(width - 1, 1) - 1
        ys = (cy + pixels * step) * 2 / max(height - 1, 1) - 1
        grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1)[None]
        return F.grid_sample(image[None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]


def colour_noise(image: torch.Tensor, order: list[int], alphas: list[float], lighting: torch.Tensor) -> torch.Tensor:
    """The reference's ``color_aug`` on an RGB [0, 1] image (its BGR constants reversed): in
    ``order``, brightness (0), contrast towards the mean grey (1) and saturation towards each
    pixel's grey (2), the grey taken once before them; then ``lighting`` (3 draws of N(0, 0.1))
    along the eigenvectors."""
    grey = (image * torch.tensor(GREY_RGB).view(3, 1, 1)).sum(0, keepdim=True)
    grey_mean = grey.mean()
    for op, alpha in zip(order, alphas):
        if op == 0:
            image = image * alpha
        elif op == 1:
            image = image * alpha + grey_mean * (1 - alpha)
        else:
            image = image * alpha + grey * (1 - alpha)
    shift_bgr = torch.tensor(EIG_VEC) @ (torch.tensor(EIG_VAL) * lighting)
    return image + shift_bgr.flip(0).view(3, 1, 1)
