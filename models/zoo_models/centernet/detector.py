"""CenterNet ("Objects as Points"): ResNet with deformable up-sampling (ResDCN) and centre heads.

Paper: Zhou, Wang, Krähenbühl, "Objects as Points", 2019 (arXiv:1904.07850).
Reference implementation: xingyizhou/CenterNet (MIT), ``src/lib/models/networks/resnet_dcn.py``
(itself from Microsoft's pose-estimation ResNet, MIT) and ``DCNv2/dcn_v2.py`` (BSD-3-Clause);
targets, losses and decoding are in :mod:`zoo_models.centernet.targets`.

The network is the reference's ``PoseResNet`` with DCN: a ResNet trunk (torchvision's
``BasicBlock``), then per up-sampling stage a modulated deformable 3x3 conv (DCNv2, here
``torchvision.ops.DeformConv2d`` with a mask) + BN + ReLU + a 4x4 stride-2 transposed conv
(bilinear init) + BN + ReLU, then one head per output (hm, wh, reg): 3x3 conv -> ReLU -> 1x1
conv. Module and parameter names equal the reference's, so its ``state_dict`` keys match.
Stage count, widths and heads come from the variant's ``arch``: the full variant is ResDCN-18
(14,437,349 trainable parameters with 80 classes, the same as the reference), the smoke variant
a narrow three-stage trunk with two up-sampling stages.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock
from torchvision.ops import DeformConv2d

from replicate.errors import ConfigError, DataError
from replicate.weights_file import checked_tier_file
from replicate.zoo.registry import register_model
from replicate.zoo.task import Task
from zoo_models.centernet import targets as ct
from zoo_models.centernet.augment import RandomScaleCropColour

BN_MOMENTUM = 0.1    # reference resnet_dcn.py BN_MOMENTUM
HM_BIAS = -2.19      # reference: hm head's last bias, -log((1 - 0.1) / 0.1): start at p = 0.1
# Loss weights and object cap: reference src/lib/opts.py defaults (hm_weight 1, wh_weight 0.1,
# off_weight 1) and src/lib/datasets/dataset/coco.py (max_objs 128); recipe.extra overrides.
LOSS_DEFAULTS = {"hm_weight": 1.0, "wh_weight": 0.1, "off_weight": 1.0, "max_objs": 128}
TOP_K = 100          # reference opts --K 100: detections kept per image


class DCN(DeformConv2d):
    """Modulated deformable conv (DCNv2) as the reference's ``DCN``: offsets and mask from a conv.

    ``conv_offset_mask`` predicts 2*9 offsets and 9 mask logits per position; it starts at zero
    (reference ``init_offset``), so the layer starts as a plain conv with mask 0.5.
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__(c_in, c_out, kernel_size=3, stride=1, padding=1, bias=True)
        self.conv_offset_mask = nn.Conv2d(c_in, 3 * 9, kernel_size=3, stride=1, padding=1, bias=True)
        # Reference DCNv2.reset_parameters: uniform(+-1/sqrt(fan_in)) weights, zero bias.
        bound = 1.0 / math.sqrt(c_in * 9)
        nn.init.uniform_(self.weight, -bound, bound)
        assert self.bias is not None and self.conv_offset_mask.bias is not None   # built with bias=True
        nn.init.zeros_(self.bias)
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def forward(self, x: Tensor) -> Tensor:
        o1, o2, mask = torch.chunk(self.conv_offset_mask(x), 3, dim=1)
        offset, mask = torch.cat((o1, o2), dim=1), torch.sigmoid(mask)
        if x.device.type == "cpu":
            # torchvision's CPU kernel is 1.7-3x slower than the same sampling done by
            # grid_sample (fwd+bwd at 8x64x16x16: 360 vs 220 ms; its backward loops per
            # element); results and gradients are equal to float precision
            # (tests/models/test_centernet.py). CUDA keeps torchvision's kernel.
            return sampled_deform_conv3x3(x, offset, mask, self.weight, self.bias)
        return super().forward(x, offset, mask)


def sampled_deform_conv3x3(x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``torchvision.ops.deform_conv2d`` for a 3x3 kernel, stride 1, padding 1, one group.

    Each of the 9 taps is read at its shifted position by bilinear ``grid_sample`` (zeros
    outside, as the DCN kernels do), scaled by its mask, then one matmul applies the weights.
    Offsets are laid out as torchvision's and DCNv2's: (dy, dx) of tap k = 3i + j in channels
    2k and 2k + 1.
    """
    batch, c_in, height, width = x.shape
    taps = torch.arange(9, device=x.device)
    tap_y = (torch.div(taps, 3, rounding_mode="floor") - 1).to(x.dtype).view(1, 9, 1, 1)
    tap_x = (taps % 3 - 1).to(x.dtype).view(1, 9, 1, 1)
    offset = offset.view(batch, 9, 2, height, width)
    ys = torch.arange(height, device=x.device, dtype=x.dtype).view(1, 1, height, 1) + tap_y + offset[:, :, 0]
    xs = torch.arange(width, device=x.device, dtype=x.dtype).view(1, 1, 1, width) + tap_x + offset[:, :, 1]
    # align_corners=False: pixel i sits at normalised (2i + 1) / size - 1.
    grid = torch.stack([(2 * xs + 1) / width - 1, (2 * ys + 1) / height - 1], dim=-1)
    sampled = F.grid_sample(x, grid.view(batch, 9 * height, width, 2), mode="bilinear", padding_mode="zeros",
                            align_corners=False).view(batch, c_in, 9, height, width)
    sampled = (sampled * mask.view(batch, 1, 9, height, width)).view(batch, c_in * 9, height * width)
    out = weight.view(weight.shape[0], c_in * 9) @ sampled
    return out.view(batch, -1, height, width) + bias.view(1, -1, 1, 1)


def fill_up_weights(up: nn.ConvTranspose2d) -> None:
    """Reference ``fill_up_weights``: a bilinear kernel in ``weight[c, 0]`` of every channel c.

    Only input-output pairs (c, 0) get it; the other entries keep their random init, exactly
    as in the reference.
    """
    w = up.weight.data
    f = math.ceil(w.size(2) / 2)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    for i in range(w.size(2)):
        for j in range(w.size(3)):
            w[0, 0, i, j] = (1 - math.fabs(i / f - c)) * (1 - math.fabs(j / f - c))
    for ch in range(1, w.size(0)):
        w[ch, 0, :, :] = w[0, 0, :, :]


def make_head(c_in: int, head_conv: int, c_out: int, heatmap: bool) -> nn.Sequential:
    """3x3 conv -> ReLU -> 1x1 conv; heatmap bias -2.19, others N(0, 0.001) (reference init)."""
    head = nn.Sequential(nn.Conv2d(c_in, head_conv, 3, padding=1, bias=True), nn.ReLU(inplace=True),
                         nn.Conv2d(head_conv, c_out, 1, bias=True))
    convs = [layer for layer in head if isinstance(layer, nn.Conv2d)]
    assert all(conv.bias is not None for conv in convs)   # built with bias=True
    if heatmap:
        nn.init.constant_(convs[-1].bias, HM_BIAS)  # type: ignore[arg-type]  # asserted above
    else:  # reference fill_fc_weights
        for conv in convs:
            nn.init.normal_(conv.weight, std=0.001)
            nn.init.zeros_(conv.bias)  # type: ignore[arg-type]  # asserted above
    return head


class CenterNetResDCN(nn.Module):
    """The reference ``PoseResNet`` (BasicBlock trunk + DCN up-sampling + heads), configurable.

    Args:
        layers: Blocks per trunk stage (ResNet-18: 2, 2, 2, 2); stage i > 0 halves the size.
        widths: Channels per trunk stage (ResNet-18: 64, 128, 256, 512); the stem has widths[0].
        deconv: Channels per up-sampling stage (reference: 256, 128, 64).
        heads: Output channels per head name (hm: classes, wh: 2, reg: 2).
        head_conv: Hidden channels of each head (reference --head_conv 64 for ResNets).
    """

    def __init__(self, layers: list[int], widths: list[int], deconv: list[int], heads: dict[str, int],
                 head_conv: int):
        super().__init__()
        self.heads = dict(heads)
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0], momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.stages = [f"layer{i + 1}" for i in range(len(layers))]  # reference names layer1..4
        for i, (blocks, width) in enumerate(zip(layers, widths)):
            setattr(self, self.stages[i], self._make_layer(width, blocks, stride=1 if i == 0 else 2))
        for m in self.modules():  # trunk init as torchvision's ResNet (the reference loads ImageNet)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.deconv_layers = self._make_deconv(deconv)
        for name, channels in self.heads.items():
            setattr(self, name, make_head(deconv[-1], head_conv, channels, heatmap=name == "hm"))

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes, momentum=BN_MOMENTUM))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _make_deconv(self, channels: list[int]) -> nn.Sequential:
        layers: list[nn.Module] = []
        for planes in channels:
            # kernel 4, padding 1, output_padding 0: reference _get_deconv_cfg(4); no bias.
            up = nn.ConvTranspose2d(planes, planes, kernel_size=4, stride=2, padding=1, output_padding=0, bias=False)
            fill_up_weights(up)
            layers += [DCN(self.inplanes, planes), nn.BatchNorm2d(planes, momentum=BN_MOMENTUM), nn.ReLU(inplace=True),
                       up, nn.BatchNorm2d(planes, momentum=BN_MOMENTUM), nn.ReLU(inplace=True)]
            self.inplanes = planes
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.stages:
            x = getattr(self, name)(x)
        x = self.deconv_layers(x)
        return {name: getattr(self, name)(x) for name in self.heads}


def down_ratio(arch: Any) -> int:
    """Output stride: 4 (stem) * 2 per trunk stage after the first / 2 per up-sampling stage."""
    ratio = 4 * 2 ** (len(arch.layers) - 1) / 2 ** len(arch.deconv)
    if ratio < 1 or ratio != int(ratio):
        raise ConfigError("model.variants.<variant>.arch.deconv",
                          f"{len(arch.layers)} trunk stages and {len(arch.deconv)} up-sampling stages give "
                          f"output stride {ratio}; it must be a whole number >= 1 (the reference: 4)")
    return int(ratio)


def load_trunk(model: CenterNetResDCN, path: Path) -> None:
    """Initialise the trunk from a torchvision ResNet state dict (the reference's ImageNet start:
    resnet_dcn.py loads torchvision's ``resnet18`` file).

    The trunk's parameter names are torchvision's (conv1, bn1, layer1..4), so the file loads as
    it is; ``fc`` is dropped, up-sampling and heads keep their init.
    """
    from replicate.runner.checkpoint import load_file

    state = load_file(path)   # data only; a file that is not a checkpoint is a DataError naming it
    if not isinstance(state, dict):
        raise DataError(str(path), "holds no state dict")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    trunk_missing = [k for k in missing if k.split(".")[0] in ("conv1", "bn1", *model.stages)]
    if trunk_missing or unexpected:
        raise DataError(str(path), f"does not fit the trunk: missing {trunk_missing[:3]}, "
                                   f"unexpected {list(unexpected)[:3]}")


def letterbox(image: Tensor, size: int) -> tuple[Tensor, float, float, float]:
    """Resize keeping the aspect ratio and pad, centred, to ``size`` x ``size``.

    The reference warps around the image centre with scale max(h, w) (ctdet.py), which is the
    same geometry. Returns the image, the scale and the x/y padding, for mapping boxes back.
    """
    height, width = image.shape[-2:]
    if height == size and width == size:
        return image, 1.0, 0.0, 0.0
    scale = size / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    resized = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear", align_corners=False,
                            antialias=True)[0]
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    out = image.new_zeros(3, size, size)
    out[:, pad_y:pad_y + new_h, pad_x:pad_x + new_w] = resized
    return out, scale, float(pad_x), float(pad_y)


def keep_resolution(image: Tensor, pad: int) -> tuple[Tensor, float, float, float]:
    """The image at its own size on a zero canvas of ``(side | pad) + 1`` per side (the reference's
    ``--keep_res`` test: the next multiple of ``pad + 1`` above each side).

    The reference warps the image's centre ``(w // 2, h // 2)`` onto the canvas centre at scale
    1, which is a whole-pixel shift: the image is copied, unresampled. Returns the canvas, the
    scale (1) and the x/y shift, as :func:`letterbox`.
    """
    height, width = image.shape[-2:]
    canvas_h, canvas_w = (height | pad) + 1, (width | pad) + 1
    shift_x, shift_y = canvas_w // 2 - width // 2, canvas_h // 2 - height // 2
    out = image.new_zeros(3, canvas_h, canvas_w)
    out[:, shift_y:shift_y + height, shift_x:shift_x + width] = image
    return out, 1.0, float(shift_x), float(shift_y)


def trunk_stride(arch: Any) -> int:
    """The trunk's total stride (ResNet: 32), which ``--keep_res`` pads each side to a multiple of."""
    return 4 * 2 ** (len(arch.layers) - 1)


def normalised(image: Tensor, arch: Any) -> Tensor:
    """The network input as the reference feeds it (``arch.input``): channels in its order (the
    reference reads images with OpenCV: BGR), then ``(x - mean) / std`` per channel. Applied
    after padding, so the padding is ``-mean / std`` as in the reference. No ``arch.input``:
    RGB in [0, 1] as loaded (the smoke variant)."""
    spec = arch.get("input")
    if spec is None:
        return image
    if spec.channels == "bgr":
        image = image.flip(0)
    mean = torch.tensor(list(spec.mean), dtype=image.dtype).view(3, 1, 1)
    std = torch.tensor(list(spec.std), dtype=image.dtype).view(3, 1, 1)
    return (image - mean) / std


def as_results_file(boxes: Tensor, scores: Tensor, decimals: int) -> tuple[Tensor, Tensor]:
    """Boxes and scores as the reference's results file holds them (coco.py convert_eval_format):
    width and height taken in float32, then x, y, w, h and the score each printed with
    ``decimals`` decimals and read back. Returned in float64 ``xyxy``, so the evaluator's
    ``xywh`` is those numbers again."""
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).float()
    rounded = [[float(f"{v:.{decimals}f}") for v in row] for row in xywh.tolist()]
    xywh64 = torch.tensor(rounded, dtype=torch.float64).reshape(-1, 4)
    xyxy = torch.cat([xywh64[:, :2], xywh64[:, :2] + xywh64[:, 2:]], dim=1)
    return xyxy, torch.tensor([float(f"{v:.{decimals}f}") for v in scores.tolist()], dtype=torch.float64)


@register_model("centernet")
class CenterNetTask(Task):
    """CenterNet object detection on COCO-format data (CocoDetection + CocoEvaluator).

    Batches are ``(images float[B,3,S,S], targets list, encoded dict)``: ``encoded`` holds the
    stacked training targets (hm, wh, reg, ind, mask) and the letterbox ``scale``/``pad`` that
    map predictions back to the original image's pixels.
    """

    _category_ids: list[int] | None = None
    # The rule that sizes each object's centre gaussian from its box in output cells (a
    # (height, width) -> radius callable): the reference's CornerNet formula. An attribute, so
    # one task's rule can be swapped (e.g. another CenterNet revision's exact roots) without
    # touching the encoder.
    gaussian_radius = staticmethod(ct.gaussian_radius)

    # ------------------------------------------------------------------ model
    def num_classes(self, arch: Any) -> int:
        """Heatmap channels: the arch's (the paper's 80 for the full variant) or the data's."""
        if arch.get("num_classes") is not None:
            return int(arch.num_classes)
        data = self.ctx.data_cfg
        if data.kind == "synthetic":
            return len(data.classes)
        raise ConfigError(f"model.variants.{self.ctx.variant}.arch.num_classes",
                          f"must be set for {data.kind} data (COCO: 80 object categories)")

    @classmethod
    def input_size_multiple(cls, model_cfg: Any, variant: str) -> Optional[int]:
        """The trunk's total stride (32): the heads' grid is the input / down_ratio, as the
        targets are laid out; the reference pads test images to this multiple (``--keep_res``)."""
        return trunk_stride(model_cfg.variants[variant].arch)

    def build_model(self, variant: str) -> nn.Module:
        arch = self.ctx.model_cfg.variants[variant].arch
        if arch.get("backbone") != "resdcn":
            raise ConfigError(f"model.variants.{variant}.arch.backbone",
                              f"{arch.get('backbone')!r} is not allowed; allowed: resdcn")
        if len(arch.widths) != len(arch.layers):
            raise ConfigError(f"model.variants.{variant}.arch.widths", "needs one width per entry of layers")
        down_ratio(arch)
        heads = {"hm": self.num_classes(arch), "wh": 2, "reg": 2}
        model = CenterNetResDCN(list(arch.layers), list(arch.widths), list(arch.deconv), heads, int(arch.head_conv))
        trunk = checked_tier_file(self.ctx.tier_cfg, "backbone_weights")   # the lab's file, hash-checked first
        if trunk is not None:
            load_trunk(model, trunk[0].path)
        return model

    # ------------------------------------------------------------------- data
    def category_ids(self) -> list[int]:
        """COCO category id of each heatmap channel (sorted ids -> channels 0..C-1)."""
        if self._category_ids is not None:
            return self._category_ids
        data = self.ctx.data_cfg
        if data.kind == "synthetic":  # the shapes generator numbers its classes 1..C
            return list(range(1, len(data.classes) + 1))
        raise ConfigError("data", "category ids are read from the annotation file: build a dataset first")

    def build_dataset(self, split: str, *, train: bool) -> Any:
        from replicate.data.coco_dataset import CocoDetection, RandomHorizontalFlip

        data = self.ctx.data_cfg
        paths = data.splits[split]
        recipe = self.ctx.tier_cfg.get("recipe")
        extra = recipe.extra if recipe is not None else {}
        transforms: Any = None
        if train and extra.get("random_crop"):   # the reference's ctdet sample (full tier)
            transforms = RandomScaleCropColour(self.ctx.input_size, self.ctx.seed,
                                               colour=bool(extra.get("colour_aug", True)))
        elif train:   # the smoke tier: a flip only (its shapes are already varied)
            transforms = RandomHorizontalFlip(0.5, generator=self.ctx.seed)
        dataset = CocoDetection(
            Path(data.root), paths.images, paths.annotations, transforms=transforms,
            shuffle_labels_seed=self.ctx.seed if (train and self.ctx.shuffle_labels) else None,
            # the reference's ctdet sample draws crowd regions as objects (full tier)
            with_crowd=bool(train and recipe is not None and recipe.get("train_on_crowd", False)))
        self._category_ids = list(dataset.category_ids)
        return dataset

    def loss_settings(self) -> dict[str, float]:
        recipe = self.ctx.tier_cfg.get("recipe")
        extra = dict(recipe.extra) if recipe is not None and recipe.get("extra") else {}
        return {k: extra.get(k, v) for k, v in LOSS_DEFAULTS.items()}

    def collate(self, items: list) -> tuple[Tensor, list[dict], dict[str, Tensor]]:
        """Letterbox to the input size, normalise, stack, and encode the training targets per image."""
        size = self.ctx.input_size
        return self.batch(items, lambda image: letterbox(image, size))

    def eval_collate(self, items: list) -> tuple[Tensor, list[dict], dict[str, Tensor]]:
        """As :meth:`collate` without the training targets (only the geometry that maps boxes
        back), or each image at its own resolution where the tier tests as the reference's
        ``--keep_res`` (``test.keep_resolution``; one image per batch)."""
        if not self.ctx.tier_cfg.test.keep_resolution:
            size = self.ctx.input_size
            return self.batch(items, lambda image: letterbox(image, size), targets=False)
        pad = trunk_stride(self.ctx.arch) - 1
        return self.batch(items, lambda image: keep_resolution(image, pad), targets=False)

    def batch(self, items: list, place: Any, normalise: bool = True,
              targets: bool = True) -> tuple[Tensor, list[dict], dict[str, Tensor]]:
        """Each image placed on its canvas by ``place`` (image -> canvas, scale, shift x, shift y),
        normalised as the reference's input, and with ``targets`` its training targets encoded on
        the canvas's output grid (an 80-class heatmap per image: evaluation skips them)."""
        arch = self.ctx.arch
        ratio, classes = down_ratio(arch), self.num_classes(arch)
        channel_of = {cid: i for i, cid in enumerate(self.category_ids())}
        if len(channel_of) > classes:
            raise ConfigError(f"model.variants.{self.ctx.variant}.arch.num_classes",
                              f"{classes} heatmap channels for {len(channel_of)} categories in the data")
        max_objs = int(self.loss_settings()["max_objs"])
        images, encoded, geometry = [], [], []
        for image, target in items:
            image, scale, pad_x, pad_y = place(image)
            if targets:
                boxes = target["boxes"] * scale + torch.tensor([pad_x, pad_y, pad_x, pad_y])
                channels = torch.tensor([channel_of[int(c)] for c in target["labels"]], dtype=torch.int64)
                grid = (image.shape[-2] // ratio, image.shape[-1] // ratio)
                encoded.append(ct.encode(boxes / ratio, channels, classes, grid, max_objs,
                                         radius_of=self.gaussian_radius))
            images.append(normalised(image, arch) if normalise else image)
            geometry.append(torch.tensor([scale, pad_x, pad_y]))
        batch = {k: torch.stack([e[k] for e in encoded]) for k in encoded[0]} if targets else {}
        batch["geometry"] = torch.stack(geometry)
        return torch.stack(images), [t for _, t in items], batch

    # ------------------------------------------------------------- train/eval
    def training_step(self, model: nn.Module, batch: Any) -> dict[str, Any]:
        images, _, enc = batch
        out = model(images)
        w = self.loss_settings()
        hm_loss = ct.focal_loss(ct.clamped_sigmoid(out["hm"]), enc["hm"])
        wh_loss = ct.reg_l1_loss(out["wh"], enc["mask"], enc["ind"], enc["wh"])
        off_loss = ct.reg_l1_loss(out["reg"], enc["mask"], enc["ind"], enc["reg"])
        loss = w["hm_weight"] * hm_loss + w["wh_weight"] * wh_loss + w["off_weight"] * off_loss
        return {"loss": loss, "hm_loss": hm_loss.detach(), "wh_loss": wh_loss.detach(),
                "off_loss": off_loss.detach()}

    def predict(self, model: nn.Module, batch: Any) -> list[dict]:
        """Top-K detections per image, boxes in the original image's pixels (no score cut)."""
        return self.detections(model(batch[0]), batch)

    def perfect_output(self, model: nn.Module, batch: Any) -> tuple[dict[str, Tensor], list[Tensor]]:
        """Heatmap logits whose sigmoid is the target heatmap, and the size and offset targets
        written at each object's centre cell (what ``training_step``'s losses are minimal for)."""
        _, _, enc = batch
        hm = enc["hm"].clamp(1e-6, 1 - 1e-6)
        batch_size, _, height, width = hm.shape

        def at_centres(values: Tensor) -> Tensor:   # [B, M, 2] at flat cells ind -> [B, 2, H, W]
            flat = torch.zeros(batch_size, height * width, 2)
            flat.scatter_(1, enc["ind"].unsqueeze(2).expand(-1, -1, 2), values * enc["mask"].unsqueeze(2))
            return flat.permute(0, 2, 1).reshape(batch_size, 2, height, width)

        output = {"hm": torch.log(hm / (1 - hm)), "wh": at_centres(enc["wh"]), "reg": at_centres(enc["reg"])}
        return output, [t["boxes"] for t in batch[1]]   # predict reports boxes in the original pixels

    def detections(self, out: dict[str, Tensor], batch: Any) -> list[dict]:
        """Decode head outputs ``out`` of ``batch`` into the evaluator's per-image dicts."""
        _, targets, enc = batch
        ids = torch.tensor(self.category_ids(), device=out["hm"].device)
        # Channels beyond the data's categories (80-class model on 3-class data) are not decoded.
        scores, channels, boxes = ct.decode(out["hm"][:, :len(ids)], out["wh"], out["reg"],
                                            int(self.ctx.arch.get("top_k", TOP_K)))
        geometry = enc["geometry"].to(boxes.device)
        boxes = boxes * down_ratio(self.ctx.arch)
        pads = geometry[:, 1:3].repeat(1, 2)[:, None, :]
        boxes = (boxes - pads) / geometry[:, 0, None, None]
        decimals = self.ctx.tier_cfg.test.result_decimals
        found = []
        for t, b, s, c in zip(targets, boxes, scores, channels):
            if decimals is not None:   # as the reference's results file rounds them
                b, s = as_results_file(b.cpu(), s.cpu(), int(decimals))
            found.append({"image_id": int(t["image_id"]), "boxes": b, "scores": s, "labels": ids[c]})
        return found

    def build_evaluator(self, split: str):
        from replicate.evaluation.coco import CocoEvaluator

        data = self.ctx.data_cfg
        return CocoEvaluator(Path(data.root) / data.splits[split].annotations, iou_types=("bbox",))

    # ------------------------------------------------------------------ check
    def batch_size_of(self, batch: Any) -> int:
        return int(batch[0].shape[0])

    def output_shapes(self, model: nn.Module, batch: Any) -> dict[str, tuple]:
        """The raw heads (hm [B,C,S/4,S/4], wh, reg) and one image's decoded detections."""
        shapes = {k: tuple(v.shape) for k, v in model(batch[0]).items()}
        shapes.update({k: tuple(v.shape) for k, v in self.predict(model, batch)[0].items() if hasattr(v, "shape")})
        return shapes

    def draw_sample(self, item: Any, names: Optional[Mapping[int, str]] = None) -> Tensor:
        """Boxes with labels over the image, the encoded centre heatmap blended in red.

        Shows the target encoding as the loss sees it: a peak at each box centre, its spread
        from the gaussian radius.
        """
        _, target = item
        size = self.ctx.input_size   # drawn in the letterboxed frame the model sees, unnormalised
        images, _, enc = self.batch([item], lambda image: letterbox(image, size), normalise=False)
        scale, pad_x, pad_y = enc["geometry"][0].tolist()
        boxes = target["boxes"] * scale + torch.tensor([pad_x, pad_y, pad_x, pad_y])
        drawn = super().draw_sample((images[0], {**target, "boxes": boxes}), names).float()
        heat = enc["hm"][0].amax(0)[None, None]
        heat = F.interpolate(heat, size=images.shape[-2:], mode="nearest")[0, 0]
        drawn[0] = torch.maximum(drawn[0], heat * 255)
        return drawn.to(torch.uint8)
