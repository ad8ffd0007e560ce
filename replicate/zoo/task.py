"""The model interface: one Task per model family, in the spirit of TF Model Garden's Task.

A Task builds the model, its datasets, a training step that returns a loss dict, a prediction
step and an evaluator. The harness (replicate.runner) owns the loop: optimizer and schedule from
the recipe, checkpoints, NaN guard, curve, early check. The harness never special-cases a model.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Mapping, Optional, Protocol

from omegaconf import DictConfig


class Evaluator(Protocol):
    """Accumulates predictions, then computes a metrics dict (keys as the claims name them)."""

    def update(self, predictions: list[dict]) -> None: ...

    def compute(self) -> dict[str, float]: ...


@dataclass
class TaskContext:
    """What a Task needs to know about the job: its model config, variant, tier and data."""

    model_cfg: DictConfig
    variant: str
    framework: str
    tier_cfg: DictConfig           # model.tiers[<tier>]
    data_cfg: DictConfig           # datasets[<tier.data>]
    input_size: int
    seed: int
    shuffle_labels: bool = False

    @property
    def arch(self) -> DictConfig:
        return self.model_cfg.variants[self.variant].arch


class Task(abc.ABC):
    """One model in one framework. Subclasses register with ``@register_model(name, framework)``;
    two builds of a model share their data pipeline by composing it (models/zoo_models/yolo/pipeline.py)."""

    name: ClassVar[str]
    framework: ClassVar[str] = "torch"   # set by register_model: the framework its steps run in
    # True: training_step(model, batch, optimizers, mixed) steps its own optimizers (GANs), through
    # ``mixed`` (replicate/runner/mixed_precision.py: autocast, scaled backward, scaler steps); the
    # loop still updates the scale, schedules, checkpoints and guards the returned losses.
    manual_optimization: ClassVar[bool] = False

    def __init__(self, ctx: TaskContext):
        self.ctx = ctx

    def prepare_data(self) -> str:
        """Make the data available (generate synthetic sets, verify manifests); return its hash."""
        from replicate.data.prepare import prepare_dataset

        return prepare_dataset(self.ctx.data_cfg)

    @abc.abstractmethod
    def build_model(self, variant: str) -> Any:
        """The model of ``variant`` (a key of the model config's variants), in this task's framework."""

    @abc.abstractmethod
    def build_dataset(self, split: str, *, train: bool) -> Any:
        """A dataset of ``split`` (a key of the data config's splits)."""

    @abc.abstractmethod
    def training_step(self, model: Any, batch: Any) -> dict[str, Any]:
        """Losses of one batch; ``loss`` is the one optimized, others are logged. A task with
        ``manual_optimization`` also takes ``optimizers`` and the loop's MixedPrecision and steps them
        itself (GANs)."""

    @abc.abstractmethod
    def predict(self, model: Any, batch: Any) -> list[dict]:
        """Predictions in the evaluator's input format."""

    @abc.abstractmethod
    def build_evaluator(self, split: str) -> Evaluator:
        """The evaluator for ``split``."""

    def collate(self, items: list) -> Any:
        """Turn dataset items into a batch; default: tuple of lists (detection style)."""
        return tuple(zip(*items))

    def eval_collate(self, items: list) -> Any:
        """An evaluation batch: as :meth:`collate` unless the reference tests otherwise
        (CenterNet tests each image at its own resolution)."""
        return self.collate(items)

    def batch_size_of(self, batch: Any) -> int:
        return len(batch[0])

    def parameter_groups(self, model: Any) -> Iterable:
        """What the optimizer updates."""
        return [p for p in model.parameters() if p.requires_grad]

    def decayed_parameters(self, model: Any, recipe: Any) -> Optional[list]:
        """The parameters (torch) or variables (TensorFlow) the recipe's weight decay applies to,
        for both frameworks' loops; None: every one the optimizer updates.

        Default None, what the other references do: torchvision's references/detection/train.py
        decays every parameter unless --norm-weight-decay (its recipes here do not set it);
        CenterNet and pix2pix train with Adam and no decay. The darknet family narrows it
        (models/zoo_models/yolo/pipeline.py).
        """
        return None

    def configure_optimizers(self, model: Any, recipe: Any, lr: float, build: Any) -> dict[str, Any]:
        """Optimizers by name; ``build(recipe, params, lr, decayed)`` makes one from the recipe.

        One optimizer named "main" by default, decaying :meth:`decayed_parameters`; GANs return
        one per network.
        """
        return {"main": build(recipe, self.parameter_groups(model), lr, self.decayed_parameters(model, recipe))}

    def check_loss(self, model: Any, batch: Any) -> Any:
        """A differentiable loss of every trainable parameter, for ``replicate check``.

        Default: the training loss. GANs (manual optimization) return the sum of their losses.
        """
        return self.training_step(model, batch)["loss"]

    def aspect_ratios(self, dataset: Any) -> Any:
        """Width/height of every item, for aspect-ratio grouping; None: the task does not group.

        Default: a COCO-format dataset (``.coco`` and ``.image_ids``) gives them from its index.
        """
        coco, ids = getattr(dataset, "coco", None), getattr(dataset, "image_ids", None)
        if coco is None or ids is None:
            return None
        return [coco.imgs[i]["width"] / coco.imgs[i]["height"] for i in ids]

    def reference_settings(self, model: Any, variant: str) -> tuple[list[str], dict[str, Any]]:
        """(settings of ``model`` that differ from its reference's code undeclared, deviations the
        variant declares): post-processing and target assignment (models/zoo_models/reference_settings.py).
        Nothing to compare by default."""
        return [], {}

    def ignored_inputs(self, model: Any, dataset: Any) -> Optional[list[str]]:
        """One line per input that one of ``model``'s networks is declared to read but does not
        (its output unchanged when that input changes: replicate/runner/input_dependence.py), on
        the first items of ``dataset``; checked at every job's start and by ``replicate check``.
        None (the default): the task declares no inputs to check."""
        return None

    def evaluation_is_stochastic(self) -> bool:
        """True when evaluating samples by design (dropout kept on, the batch's statistics): the
        path invariants then hold evaluation to leaving the model unchanged only."""
        return False

    def differential_check(self) -> Any:
        """(ok, detail) of comparing this model's framework implementations, for ``replicate
        check``; None: there is only one implementation."""
        return None

    def perfect_output(self, model: Any, batch: Any) -> Any:
        """``(output, truths)``: the network output that the training targets of ``batch`` ask
        for, exactly (a perfect model), and each image's ground-truth boxes in the coordinates
        ``predict`` reports; None: the family has no such inverse. The pre-flight ``targets``
        check replays the output through ``predict`` and compares: an encoding and a decoding
        that disagree (an offset measured from another origin, anchors read the other way round)
        cannot be learnt away."""
        return None

    @classmethod
    def check_config(cls, model_cfg: DictConfig) -> None:
        """Refuse a model config this implementation cannot run, before anything is scheduled:
        raise ConfigError naming the key (a file a variant names that is found nowhere). Read
        from the config only: nothing is built. Default: nothing to check."""

    @classmethod
    def input_size_multiple(cls, model_cfg: DictConfig, variant: str) -> Optional[int]:
        """What every ``input_size`` of ``variant`` must be a multiple of: the network's total
        downsampling where feature maps of different strides are joined, or targets laid out on
        its output grid (any other size fails mid-run on a tensor size mismatch). None: any size
        (the model resizes its input itself). Read from the config only: nothing is built."""
        return None

    def load_checkpoint(self, model: Any, path: Any) -> bool:
        """Load a model-specific checkpoint format (e.g. Darknet .weights); False: not handled."""
        return False

    def draw_sample(self, item: Any, names: Optional[Mapping[int, str]] = None) -> Any:
        """One dataset item as a uint8 image tensor [3,H,W] with its labels drawn (visual check).

        Default: detection style (image in [0,1], target with boxes and labels, the labels COCO
        category ids); ``names``: category id -> class name (the dataset's categories), else the
        id is drawn.
        """
        import torch
        from torchvision.utils import draw_bounding_boxes

        image, target = item
        labels = [(names or {}).get(int(label), str(int(label))) for label in target["labels"]]
        return draw_bounding_boxes((image.clamp(0, 1) * 255).to(torch.uint8), target["boxes"], labels=labels,
                                   colors="yellow", width=1)

    def trainable_parameters(self, model: Any) -> int:
        return sum(p.numel() for p in model.parameters() if p.requires_grad)

    def output_shapes(self, model: Any, batch: Any) -> dict[str, tuple]:
        """Shapes of the prediction outputs for ``replicate check``; default: from predict()."""
        preds = self.predict(model, batch)
        return {k: tuple(v.shape) for k, v in preds[0].items() if hasattr(v, "shape")}
