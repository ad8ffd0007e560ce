"""Each reference implementation's own evaluation loop, restated bare for the eval throughput
benchmark: its image reading, preprocessing, the model, its postprocessing and the COCO results
it writes, with nothing around them (no file checks, no targets, no label checks).

- torchvision's three detectors: pytorch/vision references/detection ``engine.evaluate``
  (inference mode, one image per batch from ``torchvision.datasets.CocoDetection``, outputs to
  the CPU) and ``coco_eval.py``'s ``prepare_for_coco_detection``/``_segmentation`` (boxes to
  xywh, masks above 0.5 RLE-encoded one by one). Its loop also scores each batch with COCOeval
  as it goes; that part is left out here (scoring is the ``coco`` benchmark's).
- CenterNet: xingyizhou/CenterNet ``test.py ctdet --keep_res`` (cv2.imread, ``pre_process``,
  ``ctdet_decode``, ``ctdet_post_process``, ``convert_eval_format``), through
  tests/centernet_reference.py, the restatement the product's path is held to.
- YOLOv3/v4: pjreddie/darknet ``validate_detector`` (one image at a time, ``letterbox_image``,
  ``get_network_boxes`` at 0.005, ``do_nms_sort`` at 0.45, ``print_cocos``). Darknet's resize is
  C; OpenCV's bilinear resize stands in for it at its speed. The letterbox size, box decoding
  and per-class NMS are the product's ``letterbox_geometry`` and ``postprocess``
  (tests/darknet_reference.py holds them to darknet's C), so this
  loop measures the harness's data path and encoding around the same network and decoder.

The model object (its weights, transform and thresholds) is the harness's own, so both sides do
the same work on the network. Each reference loads its images as it does itself: its own
DataLoader workers and pinned memory (below), whatever the device.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from zoo_models.darknet.augment import letterbox_geometry

Results = list[dict]
Run = Callable[[], tuple[int, Results]]   # -> (images evaluated, COCO results)
# The references' own loaders: torchvision references/detection train.py (the test loader takes
# --workers, default 4, without pinned memory); CenterNet src/test.py prefetch_test (1 worker,
# pinned); darknet examples/detector.c validate_detector (4 threads load the next images while the
# network runs). Pinned memory only means something beside a GPU.
TORCHVISION_LOADER = {"num_workers": 4, "pin_memory": False}
CENTERNET_LOADER = {"num_workers": 1, "pin_memory": True}
DARKNET_LOADER = {"num_workers": 4, "pin_memory": False}


def _loader(dataset: Dataset, collate: Callable[[list], Any], settings: dict[str, Any]) -> DataLoader:
    return DataLoader(dataset, batch_size=1, shuffle=False, collate_fn=collate, num_workers=settings["num_workers"],
                      pin_memory=settings["pin_memory"] and torch.cuda.is_available())


def _only_item(items: list) -> Any:
    return items[0]


def _first_of_pairs(items: list) -> tuple:
    return tuple(zip(*items))


def _split_paths(loop: Any) -> tuple[Path, Path]:
    data = loop.task.ctx.data_cfg
    paths = data.splits[loop.tier.eval_split]
    return Path(data.root) / paths.images, Path(data.root) / paths.annotations


def _listing(images_dir: Path, annotations: Path) -> tuple[list[tuple[int, Path]], list[int]]:
    """The split's (image id, file) pairs and its sorted category ids, from one parse of the
    annotation file, as each reference reads it once."""
    data = json.loads(annotations.read_text())
    images = [(image["id"], images_dir / image["file_name"]) for image in data["images"]]
    return images, sorted(c["id"] for c in data["categories"])


# ----------------------------------------------------------------------------- torchvision
def _pil_to_float(image: Any) -> torch.Tensor:
    from torchvision.transforms.functional import convert_image_dtype, pil_to_tensor

    return convert_image_dtype(pil_to_tensor(image), torch.float32)


def coco_entries(image_id: int, output: dict[str, torch.Tensor]) -> Results:
    """``prepare_for_coco_detection`` (and ``_segmentation`` when there are masks), restated."""
    from pycocotools import mask as mask_utils

    boxes = output["boxes"].clone()
    boxes[:, 2:] -= boxes[:, :2]
    scores, labels = output["scores"].tolist(), output["labels"].tolist()
    entries = [{"image_id": image_id, "category_id": labels[k], "bbox": box, "score": scores[k]}
               for k, box in enumerate(boxes.tolist())]
    if "masks" in output:
        for entry, mask in zip(entries, output["masks"] > 0.5):
            rle = mask_utils.encode(np.array(mask[0, :, :, np.newaxis].numpy(), dtype=np.uint8, order="F"))[0]
            rle["counts"] = rle["counts"].decode("utf-8")
            entry["segmentation"] = rle
    return entries


def torchvision_loop(loop: Any) -> Run:
    from torchvision.datasets import CocoDetection

    images_dir, annotations = _split_paths(loop)
    model, device = loop.model, loop.device

    def run() -> tuple[int, Results]:
        dataset = CocoDetection(str(images_dir), str(annotations), transform=_pil_to_float)
        loader = _loader(dataset, _first_of_pairs, TORCHVISION_LOADER)
        results: Results = []
        model.eval()
        with torch.inference_mode():
            for image_id, (images, _) in zip(dataset.ids, loader):
                outputs = model([image.to(device) for image in images])
                results += coco_entries(image_id, {k: v.to("cpu") for k, v in outputs[0].items()})
        return len(loader), results

    return run


# ------------------------------------------------------------------------------- CenterNet
class _KeepResolution(Dataset):
    """test.py's PrefetchDataset at --keep_res: cv2.imread and pre_process per image."""

    def __init__(self, items: list[tuple[int, Path]]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor, dict]:
        import cv2

        from tests.centernet_reference import pre_process_keep_res

        image_id, path = self.items[index]
        image, meta = pre_process_keep_res(cv2.imread(str(path)))
        return image_id, torch.from_numpy(image)[None], meta


def centernet_loop(loop: Any) -> Run:
    from tests.centernet_reference import decode_and_post_process

    images_dir, annotations = _split_paths(loop)
    model, device = loop.model, loop.device

    def run() -> tuple[int, Results]:
        items, valid_ids = _listing(images_dir, annotations)
        loader = _loader(_KeepResolution(items), _only_item, CENTERNET_LOADER)
        results: Results = []
        model.eval()
        with torch.no_grad():
            for image_id, image, meta in loader:
                heads = {k: v.to("cpu") for k, v in model(image.to(device)).items()}
                for entry in decode_and_post_process(heads["hm"], heads["wh"], heads["reg"], meta, valid_ids):
                    results.append({"image_id": image_id, **entry})
        return len(loader), results

    return run


# ---------------------------------------------------------------------------------- darknet
class _Letterboxed(Dataset):
    """validate_detector's input: the image letterboxed onto grey 0.5 at the network's size."""

    def __init__(self, items: list[tuple[int, Path]], net: int):
        self.items, self.net = items, net

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor, tuple[int, int]]:
        import cv2

        image_id, path = self.items[index]
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
        height, width = rgb.shape[:2]
        new_w, new_h = letterbox_geometry(width, height, self.net)
        boxed = np.full((self.net, self.net, 3), 0.5, dtype=np.float32)
        dx, dy = (self.net - new_w) // 2, (self.net - new_h) // 2
        boxed[dy:dy + new_h, dx:dx + new_w] = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        return image_id, torch.from_numpy(boxed.transpose(2, 0, 1))[None], (width, height)


def darknet_loop(loop: Any) -> Run:
    from zoo_models.yolo.loss import postprocess

    images_dir, annotations = _split_paths(loop)
    model, device, net = loop.model, loop.device, int(loop.tier.input_size)

    def run() -> tuple[int, Results]:
        items, category_ids = _listing(images_dir, annotations)
        loader = _loader(_Letterboxed(items, net), _only_item, DARKNET_LOADER)
        results: Results = []
        model.eval()
        with torch.no_grad():
            for image_id, image, (width, height) in loader:
                (found,) = postprocess([o.to("cpu") for o in model(image.to(device))], model.heads, (net, net))
                new_w, new_h = letterbox_geometry(width, height, net)
                boxes = found["boxes"].clone()   # print_cocos: back onto the image, clipped to it
                boxes[:, 0::2] = ((boxes[:, 0::2] - (net - new_w) // 2) * width / new_w).clamp(0, width)
                boxes[:, 1::2] = ((boxes[:, 1::2] - (net - new_h) // 2) * height / new_h).clamp(0, height)
                boxes[:, 2:] -= boxes[:, :2]
                for box, score, label in zip(boxes.tolist(), found["scores"].tolist(), found["labels"].tolist()):
                    results.append({"image_id": image_id, "category_id": category_ids[label], "bbox": box,
                                    "score": score})
        return len(loader), results

    return run


# model -> its reference's evaluation loop
REFERENCE_LOOPS: dict[str, Callable[[Any], Run]] = {
    "faster_rcnn": torchvision_loop, "mask_rcnn": torchvision_loop, "retinanet": torchvision_loop,
    "centernet": centernet_loop, "yolov3": darknet_loop, "yolov4": darknet_loop,
}


def reference_loop(cfg: Any, loop: Any) -> Run:
    """The reference's loop for the job's model, ready to run (nothing timed is done yet)."""
    return REFERENCE_LOOPS[str(cfg.model.name)](loop)
