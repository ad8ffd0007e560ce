"""Defects of the Darknet YOLOs (models/zoo_models/yolo/: torch_task.py, tf_task.py, loss.py;
models/zoo_models/darknet/augment.py): decoding, inference mode, class ids, augmentation, input scaling."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from replicate.defects.patching import MappedItems, after_build_dataset, wrap
from replicate.defects.registry import register

TORCH_YOLOS = ("yolov4", "yolov3")
ALL_YOLOS = ("yolov3", "yolov4", "yolov3/tensorflow")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@register("anchor_wh_swapped_in_decoding", TORCH_YOLOS, stage="model", type="model architecture/API misuse",
          description="inference decoding reads each anchor as (h, w) instead of (w, h)")
def anchor_wh_swapped_in_decoding(task: Any, cfg: Any) -> None:
    """The inference decoder indexes the anchors as (height, width) while the cfg lists them as
    (width, height), as the loss reads them: every predicted box gets its anchor's aspect ratio
    upside down at test time, and training never sees it."""

    def predict(original: Callable[..., Any], model: Any, batch: Any) -> list[dict]:
        heads = model.heads
        model.heads = [dataclasses.replace(h, anchors=h.anchors[:, [1, 0]]) for h in heads]
        try:
            return original(model, batch)
        finally:
            model.heads = heads

    wrap(task, "predict", predict)


@register("bn_train_mode_at_inference", ("yolov3", "yolov4"), stage="evaluation",
          type="model architecture/API misuse",
          description="model.eval() never called: batch norm normalises each test batch by its own statistics")
def bn_train_mode_at_inference(task: Any, cfg: Any) -> None:
    """The evaluation forgets ``model.eval()``: batch norm normalises every test batch with that
    batch's statistics (and overwrites its running statistics with them) instead of the ones
    accumulated in training."""

    def predict(original: Callable[..., Any], model: Any, batch: Any) -> list[dict]:
        was_training = model.training
        model.train()
        try:
            return original(model, batch)
        finally:
            model.train(was_training)

    wrap(task, "predict", predict)


@register("class_index_as_category_id", ("yolov4", "yolov3", "yolov3/tensorflow"), stage="evaluation",
          type="evaluation", description="detections report the 0-based class index as the COCO category id")
def class_index_as_category_id(task: Any, cfg: Any) -> None:
    """The detections are written with the network's 0-based class index where COCO wants the
    category id (1-based, and not contiguous on COCO itself): every class is off by one."""
    import torch

    def predict(original: Callable[..., Any], model: Any, batch: Any) -> list[dict]:
        predictions = original(model, batch)
        index = {category: i for i, category in enumerate(task.category_ids or [])}
        return [{**p, "labels": torch.tensor([index[int(c)] for c in p["labels"]], dtype=torch.int64)}
                for p in predictions]

    wrap(task, "predict", predict)


def stretch_with_uniform_box_scale(image: Any, boxes: Any, rect: tuple[float, float, float, float],
                                   out_hw: tuple[int, int]) -> tuple[Any, Any]:
    """Darknet's stretch of the crop to ``out_hw``, with the boxes scaled by the width's factor
    on both axes, as if the stretch had kept the aspect ratio."""
    from zoo_models.darknet.augment import crop_resize

    image, _ = crop_resize(image, boxes, rect, out_hw)
    x0, y0, x1, _ = rect
    scale = out_hw[1] / (x1 - x0)
    boxes = boxes.clone()
    boxes[:, 0::2] = ((boxes[:, 0::2] - x0) * scale).clamp(0, out_hw[1])
    boxes[:, 1::2] = ((boxes[:, 1::2] - y0) * scale).clamp(0, out_hw[0])
    return image, boxes


def place_with_uniform_box_scale(image: Any, boxes: Any, placement: Any, out_hw: tuple[int, int]) -> tuple[Any, Any]:
    """pjreddie's placement of the image (its aspect ratio jittered), with the boxes scaled by the
    width's factor on both axes, as if the resize had kept the aspect ratio."""
    from zoo_models.darknet.augment import place_image

    canvas, moved = place_image(image, boxes, placement, out_hw)
    scale = float(placement.nw) / image.shape[-1]
    moved = moved.clone()
    moved[:, 1::2] = (boxes[:, 1::2] * scale + float(placement.dy)) / out_hw[0]
    return canvas, moved


@register("box_scale_ignores_aspect", ("yolov3", "yolov4", "yolov3/tensorflow"), stage="data",
          type="data pipeline", description="jittered crops are stretched to the input size, their boxes scaled "
                                            "as if the aspect ratio were kept")
def box_scale_ignores_aspect(task: Any, cfg: Any) -> None:
    """The jitter augmentation stretches each random crop to the square network input (darknet's
    resize ignores the aspect ratio; pjreddie's resizes the image to a jittered aspect ratio), but
    the boxes are mapped with one scale factor, as a letterbox resize would: their heights are off
    by the aspect change, up to 2 x jitter. Both darknets' hooks are replaced, whichever runs."""

    def stretched(dataset: Any, train: bool) -> Any:
        if train:
            dataset.resize = stretch_with_uniform_box_scale
            dataset.place = place_with_uniform_box_scale
        return dataset

    after_build_dataset(task, stretched)


def _imagenet_normalised(item: tuple[Any, dict]) -> tuple[Any, dict]:
    import torch

    image, target = item
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype).view(3, 1, 1)
    return (image - mean) / std, target


@register("normalised_for_training_only", ("yolov3/tensorflow", "yolov3", "yolov4"), stage="data",
          type="data pipeline", description="ImageNet mean/std normalisation in the training pipeline only; "
                                            "evaluation feeds [0, 1] pixels")
def normalised_for_training_only(task: Any, cfg: Any) -> None:
    """The port added the ImageNet mean/std normalisation of the framework's model-zoo input
    pipeline to the training data, while the evaluation feeds Darknet's [0, 1] pixels: the
    network is tested on inputs scaled and shifted from those it learnt on."""

    def normalised(dataset: Any, train: bool) -> Any:
        return MappedItems(dataset, _imagenet_normalised) if train else dataset

    after_build_dataset(task, normalised)


@register("keras_training_false_in_step", ("yolov3/tensorflow",), stage="training",
          type="model architecture/API misuse",
          description="the Keras model is called with training=False in the training step")
def keras_training_false_in_step(task: Any, cfg: Any) -> None:
    """The training step calls the Keras model with ``training=False`` (copied from the
    inference code): batch norm normalises with its moving statistics, which never update, so
    it trains with the layers' initial statistics instead of the batch's."""

    def step(original: Callable[..., Any], model: Any, arrays: Any, training: bool = True) -> Any:
        return original(model, arrays, training=False)

    wrap(task, "training_step", step)
