"""YOLOv3 and YOLOv4 built from Darknet cfg files (PyTorch backend).

Papers: Redmon & Farhadi, "YOLOv3: An Incremental Improvement", arXiv:1804.02767 (2018);
Bochkovskiy, Wang & Liao, "YOLOv4: Optimal Speed and Accuracy of Object Detection",
arXiv:2004.10934 (2020). Reference implementations: pjreddie/darknet (cfg/yolov3.cfg,
yolov3-tiny.cfg; public domain / YOLO licence) and AlexeyAB/darknet (cfg/yolov4.cfg,
yolov4-tiny.cfg; YOLO licence), whose cfgs the package carries as models/darknet/cfg/ (written
from the architectures' facts, proven equal to the official files by tests/models/test_darknet.py).
The architecture is whatever the cfg says (models/darknet); the loss, decoding and NMS are in
models/yolo_loss.py; augmentation in models/darknet/augment.py.

Variants name a cfg in their ``arch``: ``cfg`` (file name, searched in $ZOO_DARKNET_CFG_DIR, then
among the cfgs the package carries, models/darknet/cfg/; validation refuses a name found nowhere,
replicate/config/validate.py), ``classes`` (fixed count; default: the dataset's),
``width_multiple`` (filters x this, for CPU-sized variants), ``scale_anchors``
(rescale the cfg's anchors to the tier's input size), ``bn_momentum`` (default darknet's 0.01)
and ``objectness_prior`` (initial objectness probability; default: darknet's plain init).
Released ``.weights`` files load through ``load_checkpoint``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Optional

import torch
from torch import nn

from models.darknet.augment import AugmentConfig, ResizeForEval, YoloTrainSet, to_original
from models.darknet.cfg_parser import DARKNET_BN_MOMENTUM, DarknetGraph, parse_cfg, resolve_cfg
from models.darknet.torch_backend import DarknetModel
from models.registry import register_model
from models.task import Task
from models.yolo_loss import YoloHead, assign, heads_from_graph, postprocess, truths_tensor, yolo_loss
from replicate.errors import ConfigError, DataError

ARCH_KEYS = ("cfg", "classes", "width_multiple", "scale_anchors", "bn_momentum", "objectness_prior")
AUGMENT_KEYS = ("jitter", "hue", "saturation", "exposure", "flip", "mosaic", "letter_box")


@lru_cache(maxsize=16)
def load_graph(path: str, classes: Optional[int], width_multiple: float = 1.0) -> DarknetGraph:
    return parse_cfg(path, classes, width_multiple)


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


class DarknetYoloTask(Task):
    """A YOLO family member whose architecture is a Darknet cfg."""

    frameworks: ClassVar[tuple[str, ...]] = ("torch", "tensorflow")

    def __init__(self, ctx: Any):
        super().__init__(ctx)
        self.category_ids: Optional[list[int]] = None

    # ---------------------------------------------------------------- model
    def _arch(self, variant: str) -> Any:
        arch = self.ctx.model_cfg.variants[variant].arch
        unknown = sorted(set(arch) - set(ARCH_KEYS))
        if unknown:
            raise ConfigError(f"model.variants.{variant}.arch.{unknown[0]}",
                              f"unknown key; allowed: {', '.join(ARCH_KEYS)}")
        return arch

    def num_classes(self, variant: str) -> int:
        """The variant's fixed ``classes``, else the dataset's category count."""
        arch = self._arch(variant)
        if arch.get("classes") is not None:
            return int(arch.classes)
        data = self.ctx.data_cfg
        if data.kind == "synthetic":
            return len(data.classes)
        ann = Path(data.root) / data.splits[self.ctx.tier_cfg.eval_split].annotations
        try:
            return len(json.loads(ann.read_text())["categories"])
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(str(ann), f"cannot read the categories: {exc}") from None

    def graph(self, variant: str) -> DarknetGraph:
        arch = self._arch(variant)
        key = f"model.variants.{variant}.arch.cfg"
        if not arch.get("cfg"):
            raise ConfigError(key, "required: the darknet cfg file of this variant")
        return load_graph(str(resolve_cfg(str(arch.cfg), key)), self.num_classes(variant),
                          float(arch.get("width_multiple", 1.0)))

    def build_model(self, variant: str, framework: str) -> Any:
        """A ``YoloDetector`` for "torch"; for "tensorflow" the TF twin's Keras model (models/yolo_tf.py)."""
        if framework == "tensorflow" and "tensorflow" in self.frameworks:
            return self.framework_task(framework).build_model(variant, framework)
        if framework != "torch":
            raise ConfigError("framework", f"{framework!r} is not an implementation of {self.name}; "
                                           f"allowed: {', '.join(self.frameworks)}")
        arch, graph = self._arch(variant), self.graph(variant)
        heads = heads_from_graph(graph, self.ctx.input_size, bool(arch.get("scale_anchors", False)))
        model = YoloDetector(graph, heads, self.ctx.input_size, float(arch.get("bn_momentum", DARKNET_BN_MOMENTUM)))
        if arch.get("objectness_prior") is not None:
            set_objectness_prior(model, float(arch.objectness_prior))
        return model

    def framework_task(self, framework: str) -> Task:
        """The TensorFlow twin (models/yolo_tf.py) for "tensorflow", else this task."""
        if framework != "tensorflow":
            return self
        from models.yolo_tf import YoloTfTask

        return YoloTfTask.twin_of(self)

    def differential_check(self) -> Optional[tuple[bool, str]]:
        """Torch vs TensorFlow on the same random .weights (models/darknet/tf_differential.py)."""
        from models.darknet.tf_backend import INSTALL_HINT, tf_available

        if "tensorflow" not in self.frameworks:
            return None
        if not tf_available():
            return True, f"torch vs tensorflow: skipped, tensorflow is not installed ({INSTALL_HINT})"
        from models.darknet.tf_differential import random_images, run_differential

        graph = self.graph(self.ctx.variant)
        report, _, _ = run_differential(graph, random_images(2, min(self.ctx.input_size, 128), graph.channels))
        return report.ok, f"{self.ctx.variant} variant, {min(self.ctx.input_size, 128)} px: {report.summary()}"

    def load_checkpoint(self, model: YoloDetector, path: Path) -> bool:
        """Load a Darknet ``.weights`` file (strict); other files are left to the loop."""
        if Path(path).suffix != ".weights":
            return False
        from models.darknet.weights import load_darknet_weights

        load_darknet_weights(model.net, path, strict=True)
        return True

    # ----------------------------------------------------------------- data
    def augment_config(self) -> AugmentConfig:
        """Augmentation from the cfg's [net] and last [yolo]; recipe.extra may override a key."""
        graph = self.graph(self.ctx.variant)
        recipe = self.ctx.tier_cfg.get("recipe")
        extra = dict(recipe.extra) if recipe is not None and recipe.get("extra") else {}
        overrides = {k: extra[k] for k in AUGMENT_KEYS if k in extra}
        return AugmentConfig.from_cfg(graph.net, graph.yolo_layers[-1].options, overrides)

    def build_dataset(self, split: str, *, train: bool) -> Any:
        from replicate.data.coco_dataset import CocoDetection

        data = self.ctx.data_cfg
        paths = data.splits[split]
        augment = self.augment_config()
        base = CocoDetection(Path(data.root), paths.images, paths.annotations,
                             transforms=None if train else ResizeForEval(self.ctx.input_size, augment.letter_box),
                             shuffle_labels_seed=self.ctx.seed if (train and self.ctx.shuffle_labels) else None)
        classes = self.num_classes(self.ctx.variant)
        if len(base.category_ids) != classes:
            raise ConfigError(f"model.variants.{self.ctx.variant}.arch.classes",
                              f"the model predicts {classes} classes, {base.annotation_file} has "
                              f"{len(base.category_ids)} categories")
        self.category_ids = list(base.category_ids)
        return YoloTrainSet(base, self.ctx.input_size, augment, self.ctx.seed) if train else base

    def _class_index(self, labels: torch.Tensor) -> torch.Tensor:
        if self.category_ids is None:
            raise RuntimeError("build_dataset() must run before batches are made (category ids)")
        lookup = {cat: i for i, cat in enumerate(self.category_ids)}
        return torch.tensor([lookup[int(v)] for v in labels], dtype=torch.int64)

    def collate(self, items: list) -> tuple[Any, list[dict]]:
        """Images stacked (all at the input size); targets gain ``classes`` (0-based indices)."""
        images = torch.stack([image for image, _ in items])
        targets = [{**t, "classes": self._class_index(t["labels"])} for _, t in items]
        return images, targets

    # ----------------------------------------------------------- train/eval
    def training_step(self, model: YoloDetector, batch: Any) -> dict[str, Any]:
        images, targets = batch
        outputs = model(images)
        losses = yolo_loss(outputs, targets, model.heads, tuple(images.shape[-2:]))
        return {"loss": losses["loss"], **{k: v.detach() for k, v in losses.items() if k != "loss"}}

    def predict(self, model: YoloDetector, batch: Any) -> list[dict]:
        images, targets = batch
        outputs = model(images)
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

    def build_evaluator(self, split: str):
        from replicate.evaluation.coco import CocoEvaluator

        data = self.ctx.data_cfg
        return CocoEvaluator(Path(data.root) / data.splits[split].annotations, iou_types=("bbox",))

    def output_shapes(self, model: YoloDetector, batch: Any) -> dict[str, tuple]:
        """Raw map entering each [yolo] layer: [B, anchors*(classes+5), H, W]."""
        outputs = model(batch[0])
        return {f"yolo{head.index}": tuple(out.shape) for head, out in zip(model.heads, outputs)}


@register_model("yolov3")
class YoloV3Task(DarknetYoloTask):
    """YOLOv3 (Darknet-53 + FPN-style head, yolov3.cfg)."""


@register_model("yolov4")
class YoloV4Task(DarknetYoloTask):
    """YOLOv4 (CSPDarknet53 + SPP + PAN, yolov4.cfg; CIoU loss from the cfg's iou_loss)."""

    frameworks = ("torch",)  # the TF loss implements YOLOv3's mse box loss only (models/yolo_loss_tf.py)
