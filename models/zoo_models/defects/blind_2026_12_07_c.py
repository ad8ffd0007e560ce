"""A third set of defects written on 2026-12-07 before the benchmark's checks were looked at with
them in mind (``written_before_checks``), by a helper that did not read the checks: label and
channel indexing off by one, loss reductions, a row/column-major index, unpaired jitter, a box
coordinate order and an objectness prior written into the wrong channel."""

from __future__ import annotations

from typing import Any, Callable

from replicate.defects.patching import MappedItems, after_build_dataset, after_build_model, wrap
from replicate.defects.registry import register
from zoo_models.defects.blind_2026_12_07 import BLIND


def _zero_based_labels(item: tuple[Any, dict]) -> tuple[Any, dict]:
    image, target = item
    return image, {**target, "labels": target["labels"] - 1}


@register("category_ids_zero_based", ("faster_rcnn",), stage="data", type="data pipeline",
          description="category ids shifted to 0-based indices: the first class becomes torchvision's "
                      "background label 0",
          written_before_checks=BLIND)
def category_ids_zero_based(task: Any, cfg: Any) -> None:
    """The dataset maps COCO category ids to contiguous 0-based indices (``id - 1``), as a
    classification script would, but torchvision's detectors reserve label 0 for the
    background: objects of the first category are trained as background (the class-agnostic
    RPN still proposes them), and every other class is predicted under the id of the one before
    it, so the detections are scored against the wrong category. Written on 2026-12-07 by a
    helper that did not read the benchmark's checks."""

    def zero_based(dataset: Any, train: bool) -> Any:
        return MappedItems(dataset, _zero_based_labels)

    after_build_dataset(task, zero_based)


@register("mask_channel_label_minus_one", ("mask_rcnn",), stage="evaluation",
          type="model architecture/API misuse",
          description="at inference each detection's mask is read from channel label - 1 of the mask "
                      "logits (training reads channel label)",
          written_before_checks=BLIND)
def mask_channel_label_minus_one(task: Any, cfg: Any) -> None:
    """The inference code indexes the class-specific mask logits with ``labels - 1``, as for a
    mask predictor without a background channel, while torchvision's predictor has one and its
    training loss reads channel ``labels``: every detection is pasted with the mask learnt for
    the previous class (the first class with the never-trained background channel). Boxes and
    scores are untouched, so only the masks are wrong. Written on 2026-12-07 by a helper that
    did not read the benchmark's checks."""
    import torch

    def shifted_channels(model: Any) -> None:
        predictor = model.roi_heads.mask_predictor

        def forward(original: Callable[..., Any], x: Any) -> Any:
            logits = original(x)
            # channel c now holds what the predictor wrote for c - 1: selecting `labels` reads `labels - 1`
            return logits if predictor.training else torch.roll(logits, shifts=1, dims=1)

        wrap(predictor, "forward", forward)

    after_build_model(task, shifted_channels)


@register("focal_loss_mean_reduction", ("retinanet",), stage="training", type="training procedure",
          description="the classification focal loss averaged over all anchors and classes instead of "
                      "normalised by the number of foreground anchors",
          written_before_checks=BLIND)
def focal_loss_mean_reduction(task: Any, cfg: Any) -> None:
    """The focal loss is computed with ``reduction="mean"`` (over every non-ignored anchor and
    class) instead of summed and divided by the number of anchors assigned to an object, as the
    paper (Sec. 3.3 and 4) and torchvision normalise it: the classification term shrinks by
    roughly the number of anchors per object, so the box regression dominates what the shared
    features learn and images with many objects weigh no more than empty ones. Written on
    2026-12-07 by a helper that did not read the benchmark's checks."""
    import torch
    from torchvision.ops import sigmoid_focal_loss

    def mean_reduced(model: Any) -> None:
        head = model.head.classification_head

        def compute_loss(original: Callable[..., Any], targets: list, head_outputs: dict,
                         matched_idxs: list) -> Any:
            losses = []
            for target, logits, matched in zip(targets, head_outputs["cls_logits"], matched_idxs):
                foreground = matched >= 0
                wanted = torch.zeros_like(logits)
                wanted[foreground, target["labels"][matched[foreground]]] = 1.0
                valid = matched != head.BETWEEN_THRESHOLDS
                if not bool(valid.any()):
                    losses.append(logits.sum() * 0)
                    continue
                losses.append(sigmoid_focal_loss(logits[valid], wanted[valid], reduction="mean"))
            return sum(losses) / len(targets)

        wrap(head, "compute_loss", compute_loss)

    after_build_model(task, mean_reduced)


@register("centre_index_column_major", ("centernet",), stage="data", type="data pipeline",
          description="the centre cell's flat index written column-major (x * H + y) where the "
                      "gather reads row-major (y * W + x)",
          written_before_checks=BLIND)
def centre_index_column_major(task: Any, cfg: Any) -> None:
    """The target encoder writes each object's flat index as ``ct_int[0] * output_h +
    ct_int[1]`` instead of the reference's ``ct_int[1] * output_w + ct_int[0]``, while the
    gather of the size and offset heads reads the maps row-major: the size and offset losses
    supervise the cell at the transposed position, not the object's centre, and decoding reads
    sizes and offsets at the peaks, where they were never trained. The heatmap is unaffected.
    Written on 2026-12-07 by a helper that did not read the benchmark's checks."""

    def collate(original: Callable[..., Any], items: list) -> Any:
        images, targets, encoded = original(items)
        if "ind" not in encoded:
            return images, targets, encoded
        height, width = encoded["hm"].shape[-2:]
        ind = encoded["ind"]
        return images, targets, {**encoded, "ind": (ind % width) * height + ind // width}

    wrap(task, "collate", collate)


def _independent_flips(item: tuple[Any, Any]) -> tuple[Any, Any]:
    import torch

    label, photo = item
    if torch.rand(()) < 0.5:
        label = label.flip(-1)
    if torch.rand(()) < 0.5:
        photo = photo.flip(-1)
    return label, photo


@register("pair_flipped_independently", ("pix2pix",), stage="data", type="data pipeline",
          description="the random mirror drawn separately for the label map and the photo: half the "
                      "training pairs are misaligned",
          written_before_checks=BLIND)
def pair_flipped_independently(task: Any, cfg: Any) -> None:
    """The jitter is written as two ``transforms.RandomHorizontalFlip`` pipelines, one applied to
    the label map and one to the photo, each drawing its own coin, where the reference flips
    both halves of a pair with one draw (``get_params`` shared by A and B): half of the
    training pairs show the photo mirrored against its label map, so the generator is taught a
    translation that is wrong on half its examples. Evaluation pairs are not jittered. Written
    on 2026-12-07 by a helper that did not read the benchmark's checks."""

    def unpaired(dataset: Any, train: bool) -> Any:
        if not train or not getattr(dataset, "flip", False):
            return dataset
        dataset.flip = False   # its own paired flip off; the two separate ones below instead
        return MappedItems(dataset, _independent_flips)

    after_build_dataset(task, unpaired)


@register("objectness_bce_mean_reduction", ("yolov3",), stage="training",
          type="model architecture/API misuse",
          description="objectness BCE with torch's default reduction='mean' (over every cell and "
                      "anchor) while box and class terms are summed",
          written_before_checks=BLIND)
def objectness_bce_mean_reduction(task: Any, cfg: Any) -> None:
    """The objectness term is built as ``nn.BCEWithLogitsLoss()``, whose default reduction
    averages over every anchor of every cell, while the box and class terms are summed per
    image as darknet's deltas are: objectness, the term that separates objects from the
    hundreds of empty cells, is weighted down by the number of cells and anchors of each
    [yolo] layer (48 and 192 at 128 px), so the detector scores background boxes almost as
    high as objects. Written on 2026-12-07 by a helper that did not read the benchmark's
    checks."""
    import torch

    from zoo_models.yolo.loss import layer_loss, truths_tensor

    def step(original: Callable[..., Any], model: Any, batch: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        images, targets = batch
        outputs = model(images)
        input_hw = tuple(images.shape[-2:])
        size = outputs[0].shape[0]
        gt = truths_tensor(targets, outputs[0].device)
        zero = outputs[0].new_zeros((), dtype=torch.float32)   # the parts are float32, as yolo_loss's
        box, obj, cls = zero, zero, zero
        for raw, head in zip(outputs, model.heads):
            parts = layer_loss(raw.float(), gt, head, input_hw, size)
            cells = len(head.mask) * raw.shape[-2] * raw.shape[-1]
            box = box + parts["box"] / size
            obj = obj + parts["obj"] / (size * cells)
            cls = cls + parts["cls"] / size
        return {"loss": box + obj + cls, "box": box.detach(), "obj": obj.detach(), "cls": cls.detach()}

    wrap(task, "training_step", step)


@register("tf_boxes_in_yxyx_order", ("yolov3/tensorflow",), stage="data", type="data pipeline",
          description="training truths passed in TensorFlow's (ymin, xmin, ymax, xmax) order to a loss "
                      "that reads (x0, y0, x1, y1)",
          written_before_checks=BLIND)
def tf_boxes_in_yxyx_order(task: Any, cfg: Any) -> None:
    """The TensorFlow port converts the truths to ``tf.image``'s box convention (ymin, xmin,
    ymax, xmax), as ``tf.image.crop_and_resize`` and ``draw_bounding_boxes`` want them, before
    handing them to a loss written for (x0, y0, x1, y1): every training object is placed at its
    position mirrored about the image diagonal, with width and height exchanged, while the
    evaluation scores the detections against the untouched annotation file. Written on
    2026-12-07 by a helper that did not read the benchmark's checks."""
    import numpy as np

    def collate(original: Callable[..., Any], items: list) -> Any:
        arrays, targets = original(items)
        return {**arrays, "boxes": np.ascontiguousarray(arrays["boxes"][..., [1, 0, 3, 2]])}, targets

    wrap(task, "collate", collate)


@register("objectness_prior_in_class_column", ("yolov4",), stage="model", type="weights/checkpoint",
          description="the objectness prior bias written to channel 5 (the first class) instead of "
                      "channel 4 (objectness) of each anchor",
          written_before_checks=BLIND)
def objectness_prior_in_class_column(task: Any, cfg: Any) -> None:
    """The prior-probability init of the conv before each [yolo] layer writes ``logit(prior)``
    into channel 5 of every anchor's (x, y, w, h, objectness, classes...) block, counting the
    objectness as the fifth entry from 1: objectness starts at p = 0.5 on every empty cell,
    whose loss swamps the first steps the prior was there to spare, and the first class starts
    nearly ruled out. Written on 2026-12-07 by a helper that did not read the benchmark's
    checks."""
    import torch

    def build(original: Callable[..., Any], variant: str, *args: Any, **kwargs: Any) -> Any:
        model = original(variant, *args, **kwargs)
        if task.pipeline.arch(variant).get("objectness_prior") is None:
            return model   # no prior to misplace: the cfg's plain init
        with torch.no_grad():
            for head in model.heads:
                conv = model.net.layers[head.index - 1].conv
                if conv.bias is None or head.classes < 1:
                    continue
                bias = conv.bias.view(len(head.mask), head.classes + 5)
                bias[:, 5] = bias[:, 4].clone()
                bias[:, 4] = 0.0   # the objectness channel keeps (about) the conv's default init
        return model

    wrap(task, "build_model", build)
