"""The Darknet YOLO family's data side, shared by its PyTorch (models/zoo_models/yolo/torch_task.py) and TensorFlow
(models/zoo_models/yolo/tf_task.py) builds by composition: the variant's cfg and class count, the augmentation
the cfg's [net] asks for, the COCO datasets, batches and the COCO evaluator. One pipeline, so both
builds see the same augmentation draws for a seed.

Variants name a cfg in their ``arch``: ``cfg`` (file name, searched in $ZOO_DARKNET_CFG_DIR, then
among the cfgs the package carries, models/zoo_models/darknet/cfg/; validation refuses a name found nowhere,
replicate/config/validate.py), ``classes`` (fixed count; default: the dataset's),
``width_multiple`` (filters x this, for CPU-sized variants), ``scale_anchors``
(rescale the cfg's anchors to the tier's input size), ``bn_momentum`` (default darknet's 0.01),
``objectness_prior`` (initial objectness probability; default: darknet's plain init) and
``augmentation`` (whose darknet's load_data_detection trains it: ``alexeyab``, the default, or
``pjreddie``; models/zoo_models/darknet/augment.py).
"""

from __future__ import annotations

import abc
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

import torch

from replicate.config.schema import Optimizer
from replicate.errors import ConfigError, DataError
from replicate.weights_file import checked_tier_file
from replicate.zoo.task import Task, TaskContext
from zoo_models.darknet.augment import (
    ALEXEYAB,
    AUGMENTATIONS,
    PJREDDIE,
    AugmentConfig,
    ResizeForEval,
    YoloTrainSet,
)
from zoo_models.darknet.cfg_parser import DarknetGraph, parse_cfg, resolve_cfg
from zoo_models.darknet.weights import WeightsInfo
from zoo_models.yolo import omz_protocol as omz
from zoo_models.yolo.omz_protocol import OmzResize

ARCH_KEYS = ("cfg", "classes", "width_multiple", "scale_anchors", "bn_momentum", "objectness_prior", "augmentation")
AUGMENT_KEYS = ("jitter", "hue", "saturation", "exposure", "flip", "mosaic", "letter_box")


@lru_cache(maxsize=16)
def load_graph(path: str, classes: Optional[int], width_multiple: float = 1.0) -> DarknetGraph:
    return parse_cfg(path, classes, width_multiple)


class DarknetYoloPipeline:
    """What a YOLO job reads and how its batches are made, whatever framework steps it.

    Attributes:
        ctx: The job's TaskContext.
        category_ids: The dataset's category ids in class-index order (set by build_dataset).
        annotated_ids: The eval split's images with at least one annotation (set by build_dataset).
    """

    def __init__(self, ctx: TaskContext):
        self.ctx = ctx
        self.category_ids: Optional[list[int]] = None
        self.annotated_ids: Optional[set[int]] = None

    def arch(self, variant: str) -> Any:
        arch = self.ctx.model_cfg.variants[variant].arch
        unknown = sorted(set(arch) - set(ARCH_KEYS))
        if unknown:
            raise ConfigError(f"model.variants.{variant}.arch.{unknown[0]}",
                              f"unknown key; allowed: {', '.join(ARCH_KEYS)}")
        return arch

    def num_classes(self, variant: str) -> int:
        """The variant's fixed ``classes``, else the dataset's category count."""
        arch = self.arch(variant)
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
        arch = self.arch(variant)
        key = f"model.variants.{variant}.arch.cfg"
        if not arch.get("cfg"):
            raise ConfigError(key, "required: the darknet cfg file of this variant")
        return load_graph(str(resolve_cfg(str(arch.cfg), key)), self.num_classes(variant),
                          float(arch.get("width_multiple", 1.0)))

    def trunk_file(self) -> Optional[Path]:
        """The pretrained trunk the tier's recipe starts from (``backbone_weights``: darknet's
        ``darknet53.conv.74``, made with ``darknet partial``), checked against its published hash."""
        trunk = checked_tier_file(self.ctx.tier_cfg, "backbone_weights")
        return trunk[0].path if trunk is not None else None

    @staticmethod
    def check_trunk(info: WeightsInfo, path: Path) -> None:
        """A trunk file fills the first conv layers, not none and not all (that is a whole model)."""
        if not 0 < info.conv_layers_loaded < info.conv_layers_total:
            raise DataError(str(path), f"fills {info.conv_layers_loaded} of the {info.conv_layers_total} conv layers: "
                                       "a trunk file (darknet partial) fills the first ones only")

    def augment_config(self) -> AugmentConfig:
        """Augmentation from the cfg's [net] and last [yolo], done as the variant's
        ``arch.augmentation`` darknet does it; recipe.extra may override a strength."""
        graph = self.graph(self.ctx.variant)
        recipe = self.ctx.tier_cfg.get("recipe")
        extra = dict(recipe.extra) if recipe is not None and recipe.get("extra") else {}
        overrides = {k: extra[k] for k in AUGMENT_KEYS if k in extra}
        key = f"model.variants.{self.ctx.variant}.arch.augmentation"
        augmentation = str(self.arch(self.ctx.variant).get("augmentation", ALEXEYAB))
        if augmentation not in AUGMENTATIONS:
            raise ConfigError(key, f"{augmentation!r} is not one of {', '.join(AUGMENTATIONS)}")
        config = AugmentConfig.from_cfg(graph.net, graph.yolo_layers[-1].options, overrides, augmentation)
        if config.augmentation == PJREDDIE and config.mosaic > 0:
            raise ConfigError(key, "pjreddie's load_data_detection has no mosaic; the cfg asks for one")
        return config

    @property
    def omz_protocol(self) -> bool:
        """The tier evaluates as Open Model Zoo's accuracy checker (models/zoo_models/yolo/omz_protocol.py),
        not as darknet (the default)."""
        return self.ctx.tier_cfg.test.protocol == "omz_accuracy_checker"

    def eval_transform(self) -> Any:
        """How an evaluation image reaches the network size: the checker's stretch, or darknet's
        letterbox or stretch (the tier's test.letter_box, else the cfg's [net] letter_box)."""
        if self.omz_protocol:
            return OmzResize(self.ctx.input_size)
        letter_box = self.augment_config().letter_box
        if self.ctx.tier_cfg.test.letter_box is not None:   # the tier evaluates as its reference does
            letter_box = bool(self.ctx.tier_cfg.test.letter_box)
        return ResizeForEval(self.ctx.input_size, letter_box)

    def build_dataset(self, split: str, *, train: bool) -> Any:
        from replicate.data.coco_dataset import CocoDetection

        data = self.ctx.data_cfg
        paths = data.splits[split]
        augment = self.augment_config()
        base = CocoDetection(Path(data.root), paths.images, paths.annotations,
                             transforms=None if train else self.eval_transform(),
                             shuffle_labels_seed=self.ctx.seed if (train and self.ctx.shuffle_labels) else None)
        if not train:   # the checker scores only the images with an annotation (crowd included)
            self.annotated_ids = {int(i) for i, anns in base.coco.imgToAnns.items() if anns}
        classes = self.num_classes(self.ctx.variant)
        if len(base.category_ids) != classes:
            raise ConfigError(f"model.variants.{self.ctx.variant}.arch.classes",
                              f"the model predicts {classes} classes, {base.annotation_file} has "
                              f"{len(base.category_ids)} categories")
        self.category_ids = list(base.category_ids)
        return YoloTrainSet(base, self.ctx.input_size, augment, self.ctx.seed) if train else base

    def class_index(self, labels: torch.Tensor) -> torch.Tensor:
        if self.category_ids is None:
            raise RuntimeError("build_dataset() must run before batches are made (category ids)")
        lookup = {cat: i for i, cat in enumerate(self.category_ids)}
        return torch.tensor([lookup[int(v)] for v in labels], dtype=torch.int64)

    def collate(self, items: list) -> tuple[torch.Tensor, list[dict]]:
        """Images stacked (all at the input size); targets gain ``classes`` (0-based indices)."""
        images = torch.stack([image for image, _ in items])
        targets = [{**t, "classes": self.class_index(t["labels"])} for _, t in items]
        return images, targets

    def omz_predictions(self, outputs: list[torch.Tensor], heads: list, input_hw: tuple[int, int],
                        targets: list[dict]) -> list[dict]:
        """Predictions in the evaluator's format under the accuracy checker's protocol, from the raw
        [yolo] maps ([B, A*(5+C), H, W], either build's, as torch tensors): original-image pixels,
        COCO category ids; an image without annotations gets none (the checker does not score it).
        """
        if self.category_ids is None or self.annotated_ids is None:
            raise RuntimeError("build_dataset() must build the eval split before predictions are made")
        scored = [i for i, t in enumerate(targets) if int(t["image_id"]) in self.annotated_ids]
        index = torch.tensor(scored, dtype=torch.long)
        detections = omz.postprocess([out[index.to(out.device)] for out in outputs], heads, input_hw,
                                     [omz.original_size(targets[i]) for i in scored], str(self.ctx.tier_cfg.test.nms))
        found = dict(zip(scored, detections))
        categories = torch.tensor(self.category_ids, dtype=torch.int64)
        preds = []
        none = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
        for i, target in enumerate(targets):
            det = found.get(i, none)
            labels = categories.to(det["labels"].device)[det["labels"]]
            preds.append({"image_id": int(target["image_id"]), "boxes": det["boxes"].float(),
                          "scores": det["scores"].float(), "labels": labels})
        return preds

    def build_evaluator(self, split: str) -> Any:
        from replicate.evaluation.coco import CocoEvaluator

        data = self.ctx.data_cfg
        return CocoEvaluator(Path(data.root) / data.splits[split].annotations, iou_types=("bbox",))


class YoloPipelineTask(Task):
    """What the PyTorch and TensorFlow YOLO builds share: the composed pipeline (datasets,
    category ids, evaluator), darknet's weight-decay rule and the torch-vs-TensorFlow
    differential check. Each build adds its model, batches and steps."""

    def __init__(self, ctx: TaskContext):
        super().__init__(ctx)
        self.pipeline = DarknetYoloPipeline(ctx)

    @abc.abstractmethod
    def conv_kernels(self, model: Any) -> list:
        """The kernel of every [convolutional] layer of ``model``, in this build's framework."""

    def decayed_parameters(self, model: Any, recipe: Any) -> Optional[list]:
        """Darknet's rule, the same in pjreddie's and AlexeyAB's: with SGD, ``decay`` applies to
        the weights of [convolutional] layers only, not to their biases or batch-norm scales
        (``update_convolutional_layer``, CPU and GPU; ``update_connected_layer`` likewise, a
        layer no detection build here has). Darknet's Adam (``adam_update_gpu``) decays the
        biases and scales too: every parameter."""
        if recipe.optimizer != Optimizer.SGD:
            return None
        return self.conv_kernels(model)

    @property
    def category_ids(self) -> Optional[list[int]]:
        return self.pipeline.category_ids

    def build_dataset(self, split: str, *, train: bool) -> Any:
        return self.pipeline.build_dataset(split, train=train)

    def build_evaluator(self, split: str) -> Any:
        return self.pipeline.build_evaluator(split)

    @classmethod
    def check_config(cls, model_cfg: Any) -> None:
        """Every variant's Darknet cfg is found ($ZOO_DARKNET_CFG_DIR, then the packaged ones),
        not just the chosen one: a config naming a cfg that is nowhere is broken whichever tier
        runs it. Only looked up; the model parses it."""
        for name, variant in model_cfg.variants.items():
            if variant.arch.get("cfg") is not None:
                resolve_cfg(str(variant.arch.cfg), f"model.variants.{name}.arch.cfg")

    @classmethod
    def input_size_multiple(cls, model_cfg: Any, variant: str) -> Optional[int]:
        """The cfg's total downsampling (the largest stride of any layer: 32 for yolov3/yolov4):
        its routes join upsampled maps with earlier ones of twice the size."""
        key = f"model.variants.{variant}.arch.cfg"
        cfg_name = model_cfg.variants[variant].arch.get("cfg")
        if not cfg_name:
            raise ConfigError(key, "required: the darknet cfg file of this variant")
        graph = parse_cfg(resolve_cfg(str(cfg_name), key))
        return int(max(layer.stride for layer in graph.layers))

    def differential_check(self) -> Optional[tuple[bool, str]]:
        from replicate.zoo.registry import frameworks_of

        if len(frameworks_of(self.name)) < 2:
            return None   # no other build of this model to compare with (yolov4)
        ok, detail = differential_check(self.pipeline, self.ctx)
        if not ok or "skipped" in detail:
            return ok, detail
        return self._training_differential(detail)

    def _training_differential(self, forward: str) -> tuple[bool, str]:
        """The builds on a training step (models/zoo_models/yolo/training_differential.py): this
        Task (a defect injected into it included) against a fresh one of the other framework."""
        import dataclasses

        from replicate.zoo.registry import get_task_class
        from zoo_models.yolo.training_differential import training_differential

        builds = {framework: self if framework == self.framework else
                  get_task_class(self.name, framework)(dataclasses.replace(self.ctx, framework=framework))
                  for framework in ("torch", "tensorflow")}
        # On the family's small variant: the loss and the batch norm under test are the same code in
        # every variant, and through the full variant's 75 random-weight layers correct builds'
        # gradients already differ by 0.1-0.5% (2026-12-07), where a 1e-3 check would flag noise.
        variant = "tiny" if "tiny" in self.ctx.model_cfg.variants else self.ctx.variant
        ok, detail = training_differential(builds["torch"], builds["tensorflow"], variant)
        return ok, f"{forward}; {detail} ({variant} variant)"


def differential_check(pipeline: DarknetYoloPipeline, ctx: TaskContext) -> tuple[bool, str]:
    """Torch vs TensorFlow on the same random .weights (models/zoo_models/darknet/tf_differential.py), for
    ``replicate check`` of either build: the family's two implementations compute one function."""
    from replicate.tf_import import INSTALL_HINT, tf_available

    if not tf_available():
        return True, f"torch vs tensorflow: skipped, tensorflow is not installed ({INSTALL_HINT})"
    from zoo_models.darknet.tf_differential import random_images, run_differential

    graph = pipeline.graph(ctx.variant)
    size = min(ctx.input_size, 128)
    report, _, _ = run_differential(graph, random_images(2, size, graph.channels))
    return report.ok, f"{ctx.variant} variant, {size} px: {report.summary()}"
