"""YOLOv3 and YOLOv4 built from Darknet cfg files (PyTorch backend).

Papers: Redmon & Farhadi, "YOLOv3: An Incremental Improvement", arXiv:1804.02767 (2018);
Bochkovskiy, Wang & Liao, "YOLOv4: Optimal Speed and Accuracy of Object Detection",
arXiv:2004.10934 (2020). Reference implementations: pjreddie/darknet (cfg/yolov3.cfg,
yolov3-tiny.cfg; public domain / YOLO licence) and AlexeyAB/darknet (cfg/yolov4.cfg,
yolov4-tiny.cfg; YOLO licence), whose cfgs the package carries as models/zoo_models/darknet/cfg/ (written
from the architectures' facts, proven equal to the official files by tests/models/test_darknet.py).
The architecture is whatever the cfg says (models/zoo_models/darknet); the loss, decoding and NMS are in
models/zoo_models/yolo/loss.py; augmentation in models/zoo_models/darknet/augment.py.

The data side (cfg, classes, augmentation, datasets, evaluator) is models/zoo_models/yolo/pipeline.py, shared
with the TensorFlow build (models/zoo_models/yolo/tf_task.py).
Released ``.weights`` files load through ``load_checkpoint``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from replicate.errors import ConfigError
from replicate.zoo.registry import register_model
from zoo_models.darknet.augment import to_original
from zoo_models.darknet.cfg_parser import DARKNET_BN_MOMENTUM, DarknetGraph
from zoo_models.darknet.torch_backend import DarknetModel
from zoo_models.yolo.loss import YoloHead, assign, heads_from_graph, postprocess, truths_tensor, yolo_loss
from zoo_models.yolo.pipeline import YoloPipelineTask


class YoloDetector(nn.Module):
    """The Darknet network plus what its [yolo] layers mean (anchors, loss options).

    Attributes:
        net: The DarknetModel (all trainable parameters).
        heads: One YoloHead per [yolo] layer, anchors in input pixels.
        input_size: Square input size the heads' anchors are set for.
    """

    def __init__(self, graph: DarknetGraph, heads: list[YoloHead], input_size: int, bn_momentum: float):
        super().__init__()
        self.net = DarknetModel(graph, bn_momentum)
        self.heads = heads
        self.input_size = input_size

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.net(images)


def set_objectness_prior(model: YoloDetector, prior: float) -> None:
    """Start every objectness at probability ``prior`` (bias of the conv before each [yolo]).

    Not darknet's initialisation: the prior-probability bias of RetinaNet (Lin et al. 2017,
    arXiv:1708.02002, Sec. 4.1). Without it the hundreds of empty cells per image start at 0.5
    and dominate the first hundreds of steps, which a minutes-long smoke run cannot afford.
    """
    with torch.no_grad():
        for head in model.heads:
            conv = model.net.layers[head.index - 1].conv
            if not isinstance(conv, nn.Conv2d) or conv.bias is None:
                raise ConfigError("objectness_prior", f"the conv before [yolo] layer {head.index} has no bias")
            conv.bias.view(len(head.mask), head.classes + 5)[:, 4] = float(torch.logit(torch.tensor(prior)))


class DarknetYoloTask(YoloPipelineTask):
    """A YOLO family member whose architecture is a Darknet cfg (PyTorch steps).

    The data pipeline (cfg, classes, augmentation, datasets, batches, evaluator) is a
    :class:`DarknetYoloPipeline` that the TensorFlow build (models/zoo_models/yolo/tf_task.py) composes too.
    """

    def graph(self, variant: str) -> DarknetGraph:
        return self.pipeline.graph(variant)

    def conv_kernels(self, model: YoloDetector) -> list:
        return [block.conv.weight for _, block in model.net.conv_blocks()]

    # ---------------------------------------------------------------- model
    def build_model(self, variant: str) -> YoloDetector:
        arch, graph = self.pipeline.arch(variant), self.pipeline.graph(variant)
        heads = heads_from_graph(graph, self.ctx.input_size, bool(arch.get("scale_anchors", False)))
        model = YoloDetector(graph, heads, self.ctx.input_size, float(arch.get("bn_momentum", DARKNET_BN_MOMENTUM)))
        if arch.get("objectness_prior") is not None:
            set_objectness_prior(model, float(arch.objectness_prior))
        trunk = self.pipeline.trunk_file()
        if trunk is not None:   # the recipe's ImageNet-trained trunk, into the first conv layers
            from zoo_models.darknet.weights import load_darknet_weights

            self.pipeline.check_trunk(load_darknet_weights(model.net, trunk, strict=False), trunk)
        return model

    def load_checkpoint(self, model: YoloDetector, path: Path) -> bool:
        """Load a Darknet ``.weights`` file (strict); other files are left to the loop."""
        if Path(path).suffix != ".weights":
            return False
        from zoo_models.darknet.weights import load_darknet_weights

        load_darknet_weights(model.net, path, strict=True)
        return True

    # ----------------------------------------------------------------- data
    def collate(self, items: list) -> tuple[Any, list[dict]]:
        return self.pipeline.collate(items)

    # ----------------------------------------------------------- train/eval
    def training_step(self, model: YoloDetector, batch: Any) -> dict[str, Any]:
        images, targets = batch
        outputs = model(images)
        losses = yolo_loss(outputs, targets, model.heads, tuple(images.shape[-2:]))
        return {"loss": losses["loss"], **{k: v.detach() for k, v in losses.items() if k != "loss"}}

    def predict(self, model: YoloDetector, batch: Any) -> list[dict]:
        images, targets = batch
        outputs = model(images)
        if self.pipeline.omz_protocol:   # the tier evaluates as its claim's accuracy checker did
            return self.pipeline.omz_predictions(outputs, model.heads, tuple(images.shape[-2:]), targets)
        detections = postprocess(outputs, model.heads, tuple(images.shape[-2:]))
        categories = torch.tensor(self.category_ids or [], dtype=torch.int64)
        preds = []
        for det, target in zip(detections, targets):
            boxes = to_original(det["boxes"], target["resize"].cpu()) if "resize" in target else det["boxes"]
            labels = categories.to(det["labels"].device)[det["labels"]]
            preds.append({"image_id": int(target["image_id"]), "boxes": boxes.float(),
                          "scores": det["scores"].float(), "labels": labels})
        return preds

    def perfect_output(self, model: YoloDetector, batch: Any) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Each [yolo] layer's raw map as its loss wants it: at every (truth, anchor, cell) the loss
        assigns, the xy logits of the truth's offset in the cell, the log of its size over the
        anchor's, objectness and the truth's class certain; everywhere else nothing."""
        images, targets = batch
        input_hw = tuple(images.shape[-2:])
        gt = truths_tensor(targets, images.device)
        with torch.no_grad():
            shapes = [out.shape for out in model(images)]
        outputs = []
        for head, shape in zip(model.heads, shapes):
            h, w = shape[-2], shape[-1]
            p = torch.full((len(images), len(head.mask), h, w, head.classes + 5), -20.0)
            rows, anchor, gy, gx = assign(gt, head, p.shape, input_hw)
            keep = anchor >= 0
            rows, anchor, gy, gx = rows[keep], anchor[keep], gy[keep], gx[keep]
            s = head.scale_x_y
            txy = torch.stack((gt[rows, 2] * w / input_hw[1] - gx, gt[rows, 3] * h / input_hw[0] - gy), -1)
            txy = ((txy + (s - 1) / 2) / s).clamp(1e-6, 1 - 1e-6)
            ratio = gt[rows, 4:6] / head.masked_anchors[anchor]
            b = gt[rows, 0].long()
            if head.new_coords:   # the conv applied the logistic already: xy as is, wh = 4 x^2 anchor
                p[b, anchor, gy, gx, :2], p[b, anchor, gy, gx, 2:4] = txy, (ratio / 4).sqrt()
                p[b, anchor, gy, gx, 4:] = 0.0
                p[b, anchor, gy, gx, 4] = 1.0
                p[b, anchor, gy, gx, 5 + gt[rows, 1].long()] = 1.0
            else:
                p[b, anchor, gy, gx, :2], p[b, anchor, gy, gx, 2:4] = torch.logit(txy), ratio.log()
                p[b, anchor, gy, gx, 4] = 20.0
                p[b, anchor, gy, gx, 5 + gt[rows, 1].long()] = 20.0
            outputs.append(p.permute(0, 1, 4, 2, 3).reshape(len(images), -1, h, w))
        truths = [to_original(t["boxes"].float(), t["resize"].cpu()) if "resize" in t else t["boxes"].float()
                  for t in targets]
        return outputs, truths

    def output_shapes(self, model: YoloDetector, batch: Any) -> dict[str, tuple]:
        """Raw map entering each [yolo] layer: [B, anchors*(classes+5), H, W]."""
        outputs = model(batch[0])
        return {f"yolo{head.index}": tuple(out.shape) for head, out in zip(model.heads, outputs)}


@register_model("yolov3")
class YoloV3Task(DarknetYoloTask):
    """YOLOv3 (Darknet-53 + FPN-style head, yolov3.cfg)."""


# No TensorFlow build: the TF loss implements YOLOv3's mse box loss only (models/zoo_models/yolo/loss_tf.py).
@register_model("yolov4")
class YoloV4Task(DarknetYoloTask):
    """YOLOv4 (CSPDarknet53 + SPP + PAN, yolov4.cfg; CIoU loss from the cfg's iou_loss)."""
