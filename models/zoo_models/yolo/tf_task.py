"""YOLOv3 in TensorFlow/Keras from the official Darknet cfg: the TensorFlow build of torch_task.py.

Paper: Redmon & Farhadi, "YOLOv3: An Incremental Improvement", arXiv:1804.02767 (2018).
Reference implementation: pjreddie/darknet (cfg/yolov3.cfg, yolov3-tiny.cfg, src/yolo_layer.c;
public domain / YOLO licence); re-implemented, not copied. The network comes from the same
parsed cfg (models/zoo_models/darknet/tf_backend.py), the loss/decoding/NMS from models/zoo_models/yolo/loss_tf.py.

Registered as ``("yolov3", "tensorflow")``: the leaderboard key stays ``yolov3``, and the config,
datasets, augmentation and COCO evaluator are the family's pipeline (models/zoo_models/yolo/pipeline.py), which
the torch build composes too (same augmentation draws for a seed); batches cross to TensorFlow as
NHWC numpy arrays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from replicate.tf_import import tensorflow
from replicate.zoo.registry import register_model
from zoo_models.darknet.augment import to_original
from zoo_models.darknet.cfg_parser import DARKNET_BN_MOMENTUM
from zoo_models.darknet.tf_backend import build_model as build_tf_darknet
from zoo_models.darknet.tf_backend import trainable_parameters
from zoo_models.yolo.loss import heads_from_graph
from zoo_models.yolo.loss_tf import check_heads, postprocess, yolo_loss
from zoo_models.yolo.pipeline import YoloPipelineTask


class YoloTfTask(YoloPipelineTask):
    """The TensorFlow build of a Darknet YOLO: steps in TF, the family's data pipeline composed."""

    # ---------------------------------------------------------------- model
    def build_model(self, variant: str) -> Any:
        """The Keras Darknet model of ``variant`` with ``yolo_heads`` (anchors, loss options)."""
        arch, graph = self.pipeline.arch(variant), self.pipeline.graph(variant)
        heads = heads_from_graph(graph, self.ctx.input_size, bool(arch.get("scale_anchors", False)))
        check_heads(heads)
        model = build_tf_darknet(graph, float(arch.get("bn_momentum", DARKNET_BN_MOMENTUM)))
        model.yolo_heads = tuple(heads)
        model.input_size = self.ctx.input_size
        if arch.get("objectness_prior") is not None:
            set_objectness_prior(model, float(arch.objectness_prior))
        trunk = self.pipeline.trunk_file()
        if trunk is not None:   # the recipe's ImageNet-trained trunk, into the first conv layers
            from zoo_models.darknet.tf_weights import load_darknet_weights

            self.pipeline.check_trunk(load_darknet_weights(model, trunk, strict=False), trunk)
        return model

    def trainable_parameters(self, model: Any) -> int:
        return trainable_parameters(model)

    def parameter_groups(self, model: Any) -> Any:
        return model.trainable_variables

    def conv_kernels(self, model: Any) -> list:
        return [block.conv.kernel for _, block in model.conv_blocks()]

    def load_checkpoint(self, model: Any, path: Path) -> bool:
        """Load a Darknet ``.weights`` file (strict); other files are left to the loop."""
        if Path(path).suffix != ".weights":
            return False
        from zoo_models.darknet.tf_weights import load_darknet_weights

        load_darknet_weights(model, path, strict=True)
        return True

    # ----------------------------------------------------------------- data
    def collate(self, items: list) -> tuple[dict[str, np.ndarray], list[dict]]:
        """(arrays, targets): NHWC images and truths padded to the batch's most boxes.

        arrays: ``images`` [B, S, S, 3] float32, ``boxes`` [B, T, 4] xyxy input pixels,
        ``classes`` [B, T] int32 (0-based), ``valid`` [B, T] bool; targets: the torch task's
        per-image dicts (image ids, resize records) for predict().
        """
        images, targets = self.pipeline.collate(items)
        most = max(1, max(len(t["boxes"]) for t in targets))
        boxes = np.zeros((len(targets), most, 4), np.float32)
        classes = np.zeros((len(targets), most), np.int32)
        valid = np.zeros((len(targets), most), bool)
        for i, t in enumerate(targets):
            n = len(t["boxes"])
            boxes[i, :n] = t["boxes"].reshape(-1, 4).numpy()
            classes[i, :n] = t["classes"].numpy()
            valid[i, :n] = True
        arrays = {"images": np.ascontiguousarray(images.permute(0, 2, 3, 1).numpy(), dtype=np.float32),
                  "boxes": boxes, "classes": classes, "valid": valid}
        return arrays, targets

    def batch_size_of(self, batch: Any) -> int:
        return int(batch[0]["images"].shape[0])

    # ----------------------------------------------------------- train/eval
    def training_step(self, model: Any, arrays: dict[str, Any], training: bool = True) -> dict[str, Any]:
        """Losses of one batch: Task's ``training_step(model, batch)``, traceable by tf.function.

        Two documented differences from Task's signature: ``arrays`` is ``collate``'s arrays as
        tensors without the targets (the TF loop, replicate/runner/tf_loop.py, traces this step,
        and per-image target dicts are Python objects a traced function cannot take); and the
        optional ``training`` (default True, what the loops use) lets ``training=False`` compute
        the loss with BN from its moving statistics, as the torch task does under ``model.eval()``
        (the cross-framework loss comparison in tests/models/test_yolo_tf.py).
        """
        outputs = model(arrays["images"], training=training)
        size = int(model.input_size)
        return yolo_loss(outputs, arrays["boxes"], arrays["classes"], arrays["valid"], list(model.yolo_heads),
                         (size, size))

    def predict(self, model: Any, batch: Any) -> list[dict]:
        """Detections in the evaluator's format (torch tensors, original-image pixels)."""
        arrays, targets = batch
        tf = tensorflow()
        images = tf.convert_to_tensor(arrays["images"])
        outputs = model(images, training=False)
        if self.pipeline.omz_protocol:   # the torch build's protocol code, on these maps as NCHW
            maps = [torch.from_numpy(np.asarray(out)).permute(0, 3, 1, 2) for out in outputs]
            return self.pipeline.omz_predictions(maps, list(model.yolo_heads), tuple(images.shape[1:3]), targets)
        detections = postprocess(outputs, list(model.yolo_heads), tuple(images.shape[1:3]))
        categories = np.asarray(self.category_ids or [], dtype=np.int64)
        preds = []
        for det, target in zip(detections, targets):
            boxes = torch.from_numpy(det["boxes"]).float()
            if "resize" in target:
                boxes = to_original(boxes, target["resize"].cpu())
            preds.append({"image_id": int(target["image_id"]), "boxes": boxes,
                          "scores": torch.from_numpy(det["scores"]).float(),
                          "labels": torch.from_numpy(categories[det["labels"]])})
        return preds

    def output_shapes(self, model: Any, batch: Any) -> dict[str, tuple]:
        """Raw map entering each [yolo] layer: [B, H, W, anchors*(classes+5)] (NHWC)."""
        outputs = model(batch[0]["images"], training=False)
        return {f"yolo{head.index}": tuple(out.shape) for head, out in zip(model.yolo_heads, outputs)}



def set_objectness_prior(model: Any, prior: float) -> None:
    """Objectness bias of the conv before each [yolo] = logit(prior) (see yolo.set_objectness_prior)."""
    from replicate.errors import ConfigError

    blocks = dict((layer.index, block) for layer, block in model.conv_blocks())
    for head in model.yolo_heads:
        block = blocks.get(head.index - 1)
        if block is None or block.conv.bias is None:
            raise ConfigError("objectness_prior", f"the conv before [yolo] layer {head.index} has no bias")
        bias = block.conv.bias.numpy().reshape(len(head.mask), head.classes + 5)
        bias[:, 4] = np.log(prior / (1 - prior))
        block.conv.bias.assign(bias.reshape(-1))


@register_model("yolov3", framework="tensorflow")
class YoloV3TfTask(YoloTfTask):
    """YOLOv3 in TensorFlow (yolov3.cfg; the TF loss implements YOLOv3's mse box loss)."""
