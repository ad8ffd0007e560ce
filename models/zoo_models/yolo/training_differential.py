"""Torch vs TensorFlow on a training step: the two builds of a Darknet YOLO, holding the same
random ``.weights`` (the format is the contract), see the same batch and must agree on

* the loss and each of its parts (box, objectness, class);
* every conv layer's gradients (kernel, bias or batch norm's gamma and beta), layer by layer;
* batch norm's rolling statistics after a training-mode forward (darknet's convention: 0.99 x old
  + 0.01 x the batch's, the variance unbiased; Keras' momentum weighs the other way round).

The forward comparison in inference mode is models/zoo_models/darknet/tf_differential.py; this one
holds the parts that only training reaches (the loss, its gradients, batch norm's update), where
a loss term or a batch-norm convention can differ between builds with identical forwards.
Each side runs its own Task's ``training_step``, so an injected defect on either side is what runs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

# Two correct builds differ by float32 summation order only: at most 2.0e-6 of a tensor's scale
# on yolov3's tiny variant at 64 and 128 px, AVX2 and scalar kernels, 1 and 2 threads (2026-12-07,
# docs/measurements.md); a wrong term or convention moves values by 1e-2 and more. Through the full
# variant's 75 random-weight layers correct builds already differ by up to 0.5%: replicate check
# compares training on the tiny variant (models/zoo_models/yolo/pipeline.py).
RTOL = 1e-3
LOSS_RTOL = 1e-4
PARTS = ("loss", "box", "obj", "cls")
BN_NAMES = ("beta", "gamma", "rolling mean", "rolling variance", "kernel")
PLAIN_NAMES = ("bias", "kernel")


def synthetic_truths(batch: int, size: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """[B, 3, 4] xyxy boxes in input pixels and [B, 3] class indices, seeded."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform(0.25, 0.75, (batch, 3, 2)) * size
    half = rng.uniform(0.05, 0.25, (batch, 3, 2)) * size
    boxes = np.concatenate([centre - half, centre + half], axis=-1).astype(np.float32)
    return boxes, rng.integers(0, classes, (batch, 3)).astype(np.int32)


def _close(a: np.ndarray, b: np.ndarray, rtol: float) -> tuple[bool, float]:
    scale = max(float(np.max(np.abs(a))) if a.size else 0.0, 1e-6)
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    return diff <= rtol * scale, diff / scale


def training_differential(torch_task: Any, tf_task: Any, variant: str, seed: int = 0) -> tuple[bool, str]:
    """(ok, detail): one training step of both builds of ``variant`` compared (see the module)."""
    import torch

    from replicate.tf_import import tensorflow
    from zoo_models.darknet import tf_weights
    from zoo_models.darknet.tf_differential import random_images, write_random_weights
    from zoo_models.darknet.weights import load_darknet_weights

    tf = tensorflow()
    torch_model, tf_model = torch_task.build_model(variant), tf_task.build_model(variant)
    size = int(tf_model.input_size)
    images = random_images(2, size, torch_model.net.graph.channels, seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_random_weights(torch_model.net.graph, Path(tmp) / "random.weights", seed, images)
        load_darknet_weights(torch_model.net, path, strict=True)
        tf_weights.load_darknet_weights(tf_model, path, strict=True)
    boxes, classes = synthetic_truths(2, size, int(torch_model.heads[0].classes), seed)

    arrays = {"images": tf.constant(np.transpose(images, (0, 2, 3, 1))), "boxes": tf.constant(boxes),
              "classes": tf.constant(classes), "valid": tf.ones(classes.shape, tf.bool)}
    # Batch norm's update: one training-mode forward of each build.
    with torch.no_grad():
        torch_model.train()(torch.from_numpy(images))
    tf_model(arrays["images"], training=True)
    # The loss and its gradients with batch norm on its (now equal) rolling statistics: the
    # batch's own statistics over 2 images make the backward pass through 75 layers ill-conditioned
    # (yolov3's full variant: 0.7% between correct builds), which would hide nothing and flag noise.
    targets = [{"boxes": torch.from_numpy(b), "classes": torch.from_numpy(c).long()} for b, c in zip(boxes, classes)]
    ours = torch_task.training_step(torch_model.eval(), (torch.from_numpy(images), targets))
    ours["loss"].backward()
    with tf.GradientTape() as tape:
        theirs = tf_task.training_step(tf_model, arrays, training=False)
    grads = dict(zip((id(v) for v in tf_model.trainable_variables),
                     tape.gradient(theirs["loss"], tf_model.trainable_variables)))

    # In the order they were computed: batch norm's update, the loss, its gradients.
    for statistics in (True, False):
        if not statistics:
            for part in PARTS:
                a, b = float(ours[part].detach()), float(theirs[part])
                if abs(a - b) > LOSS_RTOL * max(abs(a), 1e-6):
                    return False, f"training step: {part} {a:.6g} (torch) vs {b:.6g} (tensorflow)"
        problem = _first_layer_apart(torch_model, tf_model, grads, statistics)
        if problem:
            return False, f"training step: {problem}"
    return True, (f"training step at {size} px: rolling statistics, loss {float(ours['loss']):.5g} and its parts "
                  f"and the gradients of {len(list(tf_model.conv_blocks()))} conv layers agree")


def _first_layer_apart(torch_model: Any, tf_model: Any, grads: dict[int, Any], statistics: bool) -> str:
    """The first conv layer whose rolling statistics (``statistics``) or gradients differ, said."""
    from zoo_models.darknet import tf_weights
    from zoo_models.darknet.weights import _conv_tensors

    for (layer, block), (_, keras_block) in zip(torch_model.net.conv_blocks(), tf_model.conv_blocks()):
        names = BN_NAMES if block.bn is not None else PLAIN_NAMES
        for name, tensor, (variable, is_kernel) in zip(names, _conv_tensors(block),
                                                       tf_weights._conv_variables(keras_block)):
            if name.startswith("rolling") != statistics:
                continue
            mine = tensor.detach() if statistics else tensor.grad
            torch_side = np.zeros(tuple(tensor.shape), np.float32) if mine is None else mine.numpy()
            value = variable if statistics else grads.get(id(variable))
            tf_side = np.zeros(torch_side.shape, np.float32) if value is None else np.asarray(value)
            if is_kernel:
                tf_side = np.transpose(tf_side, tf_weights.TO_DARKNET)
            ok, relative = _close(torch_side, tf_side.reshape(torch_side.shape), RTOL)
            if not ok:
                what = name if statistics else f"{name} gradient"
                return (f"layer {layer.index} ({layer.type}, {layer.source} line {layer.line}) {what} differs by "
                        f"{relative:.2g} of its scale (allowed {RTOL:g})")
    return ""
