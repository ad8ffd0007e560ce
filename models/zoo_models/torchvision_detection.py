"""Faster R-CNN, Mask R-CNN and RetinaNet through torchvision's detection builders.

Papers: Ren et al. 2015 (Faster R-CNN, arXiv:1506.01497); Lin et al. 2017 (FPN, arXiv:1612.03144);
He et al. 2017 (Mask R-CNN, arXiv:1703.06870); Lin et al. 2017 (RetinaNet, arXiv:1708.02002).
Reference implementation: pytorch/vision torchvision.models.detection and references/detection
(BSD-3-Clause). Nothing is re-implemented here: the models are torchvision's classes, configured
from the Hydra model config; only the small smoke backbone is ours.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

from torch import nn
from torchvision.models import resnet50
from torchvision.models.detection import FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops import MultiScaleRoIAlign, misc
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from replicate.errors import ConfigError
from replicate.runner.checkpoint import load_state_file
from replicate.weights_file import checked_tier_file
from replicate.zoo.registry import register_model
from replicate.zoo.task import Task

ASPECT_RATIOS = (0.5, 1.0, 2.0)


def small_cnn(width: int) -> nn.Module:
    """Four stride-2 conv stages (stride 16, 4*width channels): a backbone that trains on a CPU."""
    layers: list[nn.Module] = []
    c_in = 3
    for c_out in (width, 2 * width, 4 * width, 4 * width):
        layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out),
                   nn.ReLU(inplace=True),
                   nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        c_in = c_out
    body = nn.Sequential(*layers)
    body.out_channels = c_in  # type: ignore[assignment]  # torchvision reads the backbone's width here
    return body


def resnet50_fpn(trainable_layers: int, retinanet: bool, trunk_weights: Optional[Path] = None) -> nn.Module:
    """ResNet-50-FPN with frozen batch norm, as torchvision builds it for its COCO weights.

    Frozen BN is what makes the trainable count equal torchvision's published num_params: with
    plain BatchNorm2d (torchvision's choice when no weights are given) 53,120 more are trainable.
    ``trunk_weights``: an ImageNet ResNet-50 state dict loaded into the trunk before the FPN is
    attached and the first ``5 - trainable_layers`` stages are frozen (the detection reference's
    ``weights_backbone``); it must fit exactly (no missing or unexpected key).
    """
    trunk = resnet50(weights=None, norm_layer=misc.FrozenBatchNorm2d)
    if trunk_weights is not None:
        load_state_file(trunk, trunk_weights)
    if retinanet:  # P3-P7: RetinaNet v1 adds P6/P7 from P5's FPN output (256 channels)
        return _resnet_fpn_extractor(trunk, trainable_layers, returned_layers=[2, 3, 4],
                                     extra_blocks=LastLevelP6P7(256, 256))
    return _resnet_fpn_extractor(trunk, trainable_layers)


class TorchvisionDetection(Task):
    """Shared Task for torchvision's detectors; subclasses choose the detector class."""

    with_masks = False
    iou_types: tuple[str, ...] = ("bbox",)
    detector: ClassVar[Callable[..., nn.Module]]   # FasterRCNN, MaskRCNN or RetinaNet

    def reference_settings(self, model: Any, variant: str) -> tuple[list[str], dict[str, Any]]:
        from zoo_models.reference_settings import compare_with_reference

        declared = dict(self.ctx.model_cfg.variants[variant].arch.get("detector_kwargs") or {})
        return compare_with_reference(model, self.detector, declared)   # type: ignore[arg-type]

    def num_classes(self, arch: Any) -> int:
        """The variant's own count if it names one (the published count is for it), else the data's."""
        if arch.get("num_classes") is not None:
            return int(arch.num_classes)
        data = self.ctx.data_cfg
        return len(data.classes) + 1 if data.kind == "synthetic" else int(data.num_classes)

    def build_model(self, variant: str) -> nn.Module:
        arch = self.ctx.model_cfg.variants[variant].arch
        size = self.ctx.input_size
        # torchvision resizes the shorter side to min_size unless the longer would pass max_size:
        # the tier's input size is min_size; max_size is the variant's (1333 for the published
        # models), else the input size (square smoke images).
        common = dict(min_size=size, max_size=int(arch.get("max_size") or size))
        if arch.backbone == "resnet50_fpn":
            tier = self.ctx.tier_cfg
            # the tier's recipe freezes what the reference freezes; the variant's count is the published one
            layers = int(tier.get("trainable_layers") or arch.get("trainable_layers", 5))
            trunk = checked_tier_file(tier, "backbone_weights")   # the lab's file, hash-checked first
            backbone = resnet50_fpn(layers, retinanet=self.detector is RetinaNet,
                                    trunk_weights=trunk[0].path if trunk is not None else None)
            return self.detector(backbone, self.num_classes(arch), **common)
        if arch.backbone == "small_cnn":
            return self.build_small(arch, common)
        raise ConfigError(f"model.variants.{variant}.arch.backbone",
                          f"{arch.backbone!r} is not allowed; allowed: resnet50_fpn, small_cnn")

    def build_small(self, arch: Any, common: dict) -> nn.Module:
        backbone = small_cnn(int(arch.width))
        anchors = AnchorGenerator(sizes=(tuple(arch.anchor_sizes),), aspect_ratios=(ASPECT_RATIOS,))
        heads = self.small_heads(arch, int(getattr(backbone, "out_channels")), anchors)
        # torchvision refuses num_classes next to a given predictor: the predictor carries it.
        num_classes = None if "box_predictor" in heads else self.num_classes(arch)
        # detector_kwargs: torchvision's own knobs (proposal counts etc.), straight from the config.
        return self.detector(backbone, num_classes, **heads, **common, **arch.get("detector_kwargs", {}))

    def small_heads(self, arch: Any, channels: int, anchors: AnchorGenerator) -> dict:
        """Heads sized for the one-feature-map smoke backbone (two-stage detectors)."""
        hidden = 256  # torchvision's 1024-wide box head would dominate the small model's cost
        return dict(
            rpn_anchor_generator=anchors,
            box_roi_pool=MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=2),
            box_head=TwoMLPHead(channels * 49, hidden), box_predictor=FastRCNNPredictor(hidden, self.num_classes(arch)),
            rpn_batch_size_per_image=int(arch.rpn_batch), box_batch_size_per_image=int(arch.roi_batch))

    def build_dataset(self, split: str, *, train: bool) -> Any:
        from replicate.data.coco_dataset import CocoDetection, RandomHorizontalFlip

        data = self.ctx.data_cfg
        paths = data.splits[split]
        recipe = self.ctx.tier_cfg.get("recipe")
        return CocoDetection(
            Path(data.root), paths.images, paths.annotations,
            transforms=RandomHorizontalFlip(0.5, generator=self.ctx.seed) if train else None,
            shuffle_labels_seed=self.ctx.seed if (train and self.ctx.shuffle_labels) else None,
            with_masks=self.with_masks,
            # the reference's training set (full tier); the smoke recipe keeps every image
            skip_unannotated=bool(train and recipe is not None and recipe.get("skip_unannotated_images", False)))

    def training_step(self, model: nn.Module, batch: Any) -> dict[str, Any]:
        images, targets = batch
        losses = model(list(images), list(targets))
        out = {"loss": sum(losses.values())}
        out.update({k: v.detach() for k, v in losses.items()})
        return out

    def predict(self, model: nn.Module, batch: Any) -> list[dict]:
        images, targets = batch
        outputs = model(list(images))
        return [{"image_id": int(t["image_id"]), **o} for o, t in zip(outputs, targets)]

    def build_evaluator(self, split: str):
        from replicate.evaluation.coco import CocoEvaluator

        data = self.ctx.data_cfg
        # The head predicts ids 1..num_classes-1 (0 is background); on COCO 11 of them are unused
        # ids, which COCOeval ignores, as the reference evaluation does.
        classes = self.num_classes(self.ctx.arch)
        return CocoEvaluator(Path(data.root) / data.splits[split].annotations, iou_types=self.iou_types,
                             label_space=range(1, classes))


@register_model("faster_rcnn")
class FasterRCNNTask(TorchvisionDetection):
    detector = FasterRCNN


@register_model("mask_rcnn")
class MaskRCNNTask(TorchvisionDetection):
    detector = MaskRCNN
    with_masks = True
    iou_types = ("bbox", "segm")

    def small_heads(self, arch: Any, channels: int, anchors: AnchorGenerator) -> dict:
        heads = super().small_heads(arch, channels, anchors)
        heads.update(mask_roi_pool=MultiScaleRoIAlign(featmap_names=["0"], output_size=14, sampling_ratio=2),
                     mask_head=MaskRCNNHeads(channels, (64, 64), 1),
                     mask_predictor=MaskRCNNPredictor(64, 64, self.num_classes(arch)))
        return heads


@register_model("retinanet")
class RetinaNetTask(TorchvisionDetection):
    detector = RetinaNet

    def small_heads(self, arch: Any, channels: int, anchors: AnchorGenerator) -> dict:
        # GroupNorm in the heads, as torchvision's RetinaNet v2 builder: it lets the heads train
        # from scratch (without it the small model reached bbox_AP 4.0 after 1200 steps).
        head = RetinaNetHead(channels, anchors.num_anchors_per_location()[0], self.num_classes(arch),
                             norm_layer=partial(nn.GroupNorm, int(arch.get("head_groups", 16))))
        return dict(anchor_generator=anchors, head=head)
