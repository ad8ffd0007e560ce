"""FCOS (Tian et al. 2019, arXiv:1904.01355) through torchvision's ``FCOS`` class, on a backbone
small enough to train on a CPU in seconds: the shape a lab's reimplementation takes when it
plugs into zoo-replicate. Data and evaluation are the harness's (COCO format, COCO evaluation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn
from torchvision.models import resnet50
from torchvision.models.detection import FCOS
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops import misc
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from replicate.zoo.registry import register_model
from replicate.zoo.task import Task


def tiny_backbone(width: int) -> nn.Module:
    """Three stride-2 conv stages (stride 8): one feature map of ``2 * width`` channels."""
    layers: list[nn.Module] = []
    c_in = 3
    for c_out in (width, 2 * width, 2 * width):
        layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out),
                   nn.ReLU(inplace=True)]
        c_in = c_out
    body = nn.Sequential(*layers)
    body.out_channels = c_in  # type: ignore[assignment]  # torchvision reads the backbone's width here
    return body


@register_model("tiny_fcos")
class TinyFcosTask(Task):
    """FCOS with one feature map; everything else is torchvision's defaults."""

    def num_classes(self) -> int:
        return len(self.ctx.data_cfg.classes) + 1   # the synthetic shapes' classes, + background

    def build_model(self, variant: str) -> nn.Module:
        arch = self.ctx.model_cfg.variants[variant].arch
        size = self.ctx.input_size
        if arch.backbone == "resnet50_fpn":   # the published model: torchvision's FCOS, P3-P7, frozen BN
            trunk = resnet50(weights=None, norm_layer=misc.FrozenBatchNorm2d)
            body = _resnet_fpn_extractor(trunk, 5, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256))
            return FCOS(body, int(arch.num_classes), min_size=size, max_size=int(arch.max_size))
        # one anchor per location: FCOS is anchor-free, torchvision's FCOS asks for exactly one
        anchors = AnchorGenerator(sizes=((int(arch.anchor_size),),), aspect_ratios=((1.0,),))
        return FCOS(tiny_backbone(int(arch.width)), self.num_classes(), min_size=size, max_size=size,
                    anchor_generator=anchors)

    def build_dataset(self, split: str, *, train: bool) -> Any:
        from replicate.data.coco_dataset import CocoDetection, RandomHorizontalFlip

        data = self.ctx.data_cfg
        return CocoDetection(Path(data.root), data.splits[split].images, data.splits[split].annotations,
                             transforms=RandomHorizontalFlip(0.5, generator=self.ctx.seed) if train else None,
                             shuffle_labels_seed=self.ctx.seed if (train and self.ctx.shuffle_labels) else None)

    def training_step(self, model: nn.Module, batch: Any) -> dict[str, Any]:
        images, targets = batch
        losses = model(list(images), list(targets))
        return {"loss": sum(losses.values()), **{k: v.detach() for k, v in losses.items()}}

    def predict(self, model: nn.Module, batch: Any) -> list[dict]:
        images, targets = batch
        return [{"image_id": int(t["image_id"]), **o} for o, t in zip(model(list(images)), targets)]

    def build_evaluator(self, split: str) -> Any:
        from replicate.evaluation.coco import CocoEvaluator

        data = self.ctx.data_cfg
        return CocoEvaluator(Path(data.root) / data.splits[split].annotations, iou_types=("bbox",),
                             label_space=range(1, self.num_classes()))
