"""The pix2pix authors' FCN-score segmenter: their Caffe FCN-8s for Cityscapes, run in torch.

The network is the one ``scripts/eval_cityscapes/caffemodel/deploy.prototxt`` defines
(phillipi/pix2pix 89ff2a8; the same file in junyanz/pytorch-CycleGAN-and-pix2pix), written
here as code: the graph is fixed, and the caffemodel supplies every weight, each checked
against the shape this network gives it, so no prototxt is placed or parsed.

* VGG-16 trunk: 3x3 convolutions with ReLU, ``pad: 100`` on ``conv1_1`` and 1 on the others;
  2x2 max pools of stride 2 with Caffe's ceil rounding of the output size;
* ``fc6_cs`` (7x7, no pad) and ``fc7_cs`` (1x1), ReLU; ``score_fr``: 20 scores per pixel;
* ``upscore2`` (deconvolution 4x4, stride 2, no bias), plus ``score_pool4`` cropped at offset
  5 (Crop, axis 2); ``upscore_pool4`` (4x4, stride 2, no bias), plus ``score_pool3`` cropped at
  offset 9; ``upscore8`` (16x16, stride 8, no bias) cropped at offset 31 to the input's size.
  The skip scores are summed unscaled (Eltwise SUM; no Scale layers in this prototxt).

Input as ``cityscapes.py``'s ``preprocess``: RGB -> BGR, the mean (72.78044, 83.21195,
73.45286) subtracted, no scaling; the output as ``util.py``'s ``get_out_scoremap``: the argmax
over the 20 scores of ``score``, as uint8. The evaluation script feeds each image at the
gtFine size (1024 x 2048), after upsampling it from the 256 px the FCN was trained at.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from replicate.errors import DataError
from replicate.evaluation.caffemodel import read_caffemodel

MEAN_BGR = (72.78044, 83.21195, 73.45286)   # cityscapes.py, self.mean (subtracted after RGB -> BGR)
CROP_POOL4, CROP_POOL3, CROP_SCORE = 5, 9, 31   # deploy.prototxt crop_param offsets
FIRST_PAD = 100                                  # deploy.prototxt conv1_1 pad


@dataclass(frozen=True)
class Widths:
    """Channel widths of the network; the defaults are deploy.prototxt's ``num_output``s
    (narrower ones keep tests small; the authors' file only fits the defaults)."""

    stages: tuple[tuple[int, ...], ...] = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
    fc: int = 4096
    classes: int = 20   # score_fr num_output: the 19 Cityscapes train classes and one more


def crop(x: torch.Tensor, like: torch.Tensor, offset: int) -> torch.Tensor:
    """Caffe's Crop (axis 2, one offset): ``x`` from ``offset`` in H and W, to ``like``'s size."""
    height, width = like.shape[-2:]
    if x.shape[-2] - offset < height or x.shape[-1] - offset < width:
        raise ValueError(f"crop of {tuple(x.shape[-2:])} at offset {offset} to {(height, width)} is out of bounds")
    return x[..., offset:offset + height, offset:offset + width]


class FCN8s(nn.Module):
    """deploy.prototxt's FCN-8s; ``layer`` holds each learned layer under its Caffe name."""

    def __init__(self, widths: Widths = Widths()):
        super().__init__()
        self.widths = widths
        self.stage_names: list[list[str]] = []
        layers: dict[str, nn.Module] = {}
        channels = 3
        for s, stage in enumerate(widths.stages, start=1):
            names = [f"conv{s}_{i}" for i in range(1, len(stage) + 1)]
            for name, out in zip(names, stage):
                layers[name] = nn.Conv2d(channels, out, 3, padding=FIRST_PAD if name == "conv1_1" else 1)
                channels = out
            self.stage_names.append(names)
        n = widths.classes
        layers["fc6_cs"] = nn.Conv2d(channels, widths.fc, 7)
        layers["fc7_cs"] = nn.Conv2d(widths.fc, widths.fc, 1)
        layers["score_fr"] = nn.Conv2d(widths.fc, n, 1)
        layers["upscore2"] = nn.ConvTranspose2d(n, n, 4, stride=2, bias=False)
        layers["score_pool4"] = nn.Conv2d(widths.stages[3][-1], n, 1)
        layers["upscore_pool4"] = nn.ConvTranspose2d(n, n, 4, stride=2, bias=False)
        layers["score_pool3"] = nn.Conv2d(widths.stages[2][-1], n, 1)
        layers["upscore8"] = nn.ConvTranspose2d(n, n, 16, stride=8, bias=False)
        self.layer = nn.ModuleDict(layers)

    def forward(self, data: torch.Tensor) -> torch.Tensor:
        """Preprocessed BGR [N, 3, H, W] -> ``score`` [N, classes, H, W]."""
        h, pools = data, []
        for names in self.stage_names:
            for name in names:
                h = F.relu(self.layer[name](h))
            h = F.max_pool2d(h, 2, stride=2, ceil_mode=True)   # Caffe rounds pooled sizes up
            pools.append(h)
        h = F.relu(self.layer["fc6_cs"](h))
        h = F.relu(self.layer["fc7_cs"](h))
        upscore2 = self.layer["upscore2"](self.layer["score_fr"](h))
        fuse_pool4 = upscore2 + crop(self.layer["score_pool4"](pools[3]), upscore2, CROP_POOL4)
        upscore_pool4 = self.layer["upscore_pool4"](fuse_pool4)
        fuse_pool3 = upscore_pool4 + crop(self.layer["score_pool3"](pools[2]), upscore_pool4, CROP_POOL3)
        return crop(self.layer["upscore8"](fuse_pool3), data, CROP_SCORE)


def load_fcn8s(path: Path, widths: Widths = Widths()) -> FCN8s:
    """An FCN-8s with every weight from the caffemodel at ``path``, each of the shape deploy.prototxt
    gives it (Caffe's ``CopyTrainedLayersFrom`` refuses the same mismatches); layers of the file
    that the network lacks are ignored, as Caffe ignores them.

    Raises:
        DataError: naming ``path``: unreadable, or a layer missing, short of blobs or misshapen.
    """
    with torch.device("meta"):   # shapes only: every weight comes from the file (no init of 134M)
        net = FCN8s(widths)
    blobs = read_caffemodel(path)
    state = {}
    shapes = {key: tuple(t.shape) for key, t in net.state_dict().items()}   # layer.<name>.weight, .bias
    for name in net.layer:
        keys = [key for key in shapes if key.startswith(f"layer.{name}.")]
        found = blobs.get(name)
        if found is None:
            raise DataError(str(path), f"no weights for layer {name!r}: not the authors' FCN-8s "
                                       f"(scripts/eval_cityscapes/caffemodel/deploy.prototxt)")
        if len(found) != len(keys):
            raise DataError(str(path), f"layer {name!r} has {len(found)} blobs, the FCN-8s's has {len(keys)}")
        for key, blob in zip(keys, found):
            values = blob.as_shape(shapes[key])
            if values is None:
                raise DataError(str(path), f"layer {name!r} {key.rsplit('.', 1)[1]} is {list(blob.shape)}, "
                                           f"the FCN-8s's is {list(shapes[key])}")
            state[key] = torch.from_numpy(values)
    net.load_state_dict(state, assign=True)
    return net.eval()


@contextmanager
def ieee_fp32() -> Iterator[None]:
    """cuDNN convolutions in full float32 while inside (Caffe ran them so; torch's default lets
    cuDNN use TF32 on Ampere and later GPUs), restored after."""
    conv = getattr(torch.backends.cudnn, "conv")   # torch >= 2.9's per-backend precision settings
    before = conv.fp32_precision
    conv.fp32_precision = "ieee"
    try:
        yield
    finally:
        conv.fp32_precision = before


class AuthorsFCN8s:
    """The FCN-score segmenter of the pix2pix authors, from their ``fcn-8s-cityscapes.caffemodel``."""

    def __init__(self, path: Path, device: str = "cpu", widths: Widths = Widths()):
        self.net = load_fcn8s(path, widths).to(device)
        self.device = device
        self.mean = torch.tensor(MEAN_BGR, dtype=torch.float32).view(3, 1, 1)

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """uint8 RGB [H, W, 3] -> the ``data`` blob [1, 3, H, W]: BGR, mean subtracted, unscaled."""
        bgr = torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1])).float().permute(2, 0, 1)
        return (bgr - self.mean)[None]

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> np.ndarray:
        """uint8 RGB [H, W, 3] -> each pixel's class [H, W] as uint8, 0..19 (19: the FCN's 20th)."""
        with ieee_fp32():
            score = self.net(self.preprocess(image).to(self.device))
        return score.argmax(1)[0].to(torch.uint8).cpu().numpy()
