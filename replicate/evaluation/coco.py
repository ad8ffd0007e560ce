"""COCO box and mask AP through faster-coco-eval.

faster-coco-eval reimplements pycocotools' ``COCOeval`` in C++ and returns the same 12 summary
statistics (tests check equality within 1e-4), several times faster, which matters for a nightly
suite that evaluates seven models on val2017.

Two entry points:

* :func:`evaluate_files` scores a COCO results file (the format of ``test-dev`` submissions and
  of released detections) against a ground-truth annotation file; statistics are fractions
  0..1, exactly as pycocotools prints them.
* :class:`CocoEvaluator` accumulates a model's tensor predictions batch by batch and returns the
  statistics in percent, as papers report them, keyed ``f"{iou_type}_{stat}"`` (e.g.
  ``bbox_AP``, ``segm_AP50``), the names claims in ``conf/`` refer to.

A statistic that pycocotools leaves undefined (no ground truth in that area range) is the
sentinel ``-1.0`` in both, never scaled, so it cannot be mistaken for a measured value.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils
import torch
from faster_coco_eval import COCO, COCOeval_faster

from replicate.errors import ConfigError, DataError

STAT_NAMES = (
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)
"""The 12 statistics of ``COCOeval.summarize()``, in pycocotools' order."""

IOU_TYPES = ("bbox", "segm")
"""IoU types this module evaluates."""

UNDEFINED = -1.0
"""pycocotools' value for a statistic with nothing to measure (e.g. APs without small objects)."""

# The key of a results entry that carries the geometry each IoU type is computed on.
_GEOMETRY_KEY = {"bbox": "bbox", "segm": "segmentation"}
# An annotation or detections file read whole: COCO's largest (instances_train2017.json) is 0.45 GB.
MAX_JSON_BYTES = 2 * 1024**3
_GT_DICT_NAME = "<ground-truth dict>"
_MASK_THRESHOLD = 0.5

_log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def evaluate_files(
    annotations: str | Path, detections: str | Path, iou_type: str = "bbox"
) -> list[float]:
    """Scores a COCO results file against a ground-truth annotation file.

    Evaluation covers every image of the ground truth: an image without detections counts its
    objects as misses, as in pycocotools.

    Args:
        annotations: Ground-truth file in COCO instances format (images, annotations,
            categories).
        detections: Results file: a JSON list of ``{"image_id", "category_id", "score",
            "bbox" | "segmentation"}``; ``bbox`` is ``[x, y, w, h]`` in pixels.
        iou_type: ``"bbox"`` or ``"segm"``.

    Returns:
        The 12 statistics in :data:`STAT_NAMES` order, as fractions 0..1 (``-1.0`` where
        undefined). An empty detections list gives all ``0.0``.

    Raises:
        ConfigError: ``iou_type`` is not one of :data:`IOU_TYPES`.
        DataError: A file is missing, is not JSON, or has the wrong structure; ``path`` names
            the file and the message says what is wrong.
    """
    _check_iou_type(iou_type, key="iou_type")
    gt_path, dt_path = str(annotations), str(detections)
    gt_data = _read_json(gt_path)
    validate_ground_truth(gt_data, gt_path, (iou_type,))
    results = _read_json(dt_path)
    validate_results(results, dt_path, gt_data, iou_type)
    return _evaluate(_load_gt(gt_data, copy_data=False), results, iou_type)


def write_results(results: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Writes COCO results (e.g. from :func:`to_coco_results`) as a JSON file.

    Args:
        results: Entries in COCO results format.
        path: Destination; parent folders are created.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Compact separators: a val2017 results file has ~10^5 entries.
    path.write_text(json.dumps(list(results), separators=(",", ":")))
    return path


def _read_json(path: str) -> Any:
    from replicate.json_files import read_json

    return read_json(path, max_bytes=MAX_JSON_BYTES)


# --------------------------------------------------------------------------------------------
# Validation: pycocotools answers bad input with KeyError/AssertionError deep inside; these
# checks name the file and the entry instead, so a broken file is a user error, not a crash.
# --------------------------------------------------------------------------------------------


def _check_iou_type(iou_type: Any, key: str) -> None:
    if iou_type not in IOU_TYPES:
        raise ConfigError(key, f"unknown iou type {iou_type!r}; allowed: {', '.join(IOU_TYPES)}")


def validate_ground_truth(data: Any, name: str, iou_types: Iterable[str]) -> None:
    """Checks that ``data`` has the structure COCO evaluation needs.

    Args:
        data: The parsed ground truth.
        name: The file (or a stand-in name) reported in errors.
        iou_types: IoU types it will be evaluated with; ``segm`` needs image sizes and
            annotation segmentations.

    Raises:
        DataError: Naming ``name`` and the first problem found.
    """
    if not isinstance(data, dict):
        raise DataError(name, f"ground truth must be a JSON object, got {type(data).__name__}")
    for section in ("images", "annotations", "categories"):
        if not isinstance(data.get(section), list):
            raise DataError(name, f"ground truth needs a list under '{section}'")
    needs_masks = "segm" in iou_types
    image_keys: tuple[str, ...] = ("id", "height", "width") if needs_masks else ("id",)
    ann_keys: tuple[str, ...] = ("id", "image_id", "category_id", "bbox", "area")
    ann_keys += ("segmentation",) if needs_masks else ()
    _require_keys(data["images"], image_keys, name, "images")
    _require_keys(data["categories"], ("id",), name, "categories")
    _require_keys(data["annotations"], ann_keys, name, "annotations")


def _require_keys(entries: list, keys: tuple[str, ...], name: str, section: str) -> None:
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise DataError(name, f"{section}[{i}] is not an object")
        missing = [k for k in keys if k not in entry]
        if missing:
            raise DataError(name, f"{section}[{i}] lacks {', '.join(map(repr, missing))}")


def validate_results(results: Any, name: str, gt_data: Mapping[str, Any], iou_type: str) -> None:
    """Checks a COCO results list against the ground truth it will be scored on.

    A ``category_id`` unknown to the ground truth is an error rather than a silent miss:
    an off-by-one label mapping (contiguous 0..79 vs COCO's 1..90) is a classic replication
    defect and would otherwise only show up as a low AP.

    Args:
        results: The parsed results.
        name: The file (or a stand-in name) reported in errors.
        gt_data: The validated ground truth.
        iou_type: ``bbox`` needs ``bbox`` in each entry, ``segm`` needs ``segmentation``.

    Raises:
        DataError: Naming ``name`` and the first problem found.
    """
    if not isinstance(results, list):
        raise DataError(name, f"detections must be a JSON list, got {type(results).__name__}")
    image_ids = {img["id"] for img in gt_data["images"]}
    category_ids = {cat["id"] for cat in gt_data["categories"]}
    required = ("image_id", "category_id", "score", _GEOMETRY_KEY[iou_type])
    for i, det in enumerate(results):
        if not isinstance(det, dict):
            raise DataError(name, f"detection {i} is not an object")
        missing = [k for k in required if k not in det]
        if missing:
            raise DataError(
                name, f"detection {i} lacks {', '.join(map(repr, missing))} (iou_type={iou_type})"
            )
        if det["image_id"] not in image_ids:
            raise DataError(
                name, f"detection {i}: image_id {det['image_id']!r} not in ground truth"
            )
        if det["category_id"] not in category_ids:
            raise DataError(
                name, f"detection {i}: category_id {det['category_id']!r} not in ground truth"
            )
        if iou_type == "bbox" and not _is_box(det["bbox"]):
            raise DataError(name, f"detection {i}: bbox must be 4 numbers [x, y, w, h], finite, got {det['bbox']!r}")
        if not _is_number(det["score"]):
            raise DataError(name, f"detection {i}: score must be a finite number, got {det['score']!r}")


def _is_box(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 4 and all(_is_number(v) for v in value)


def _is_number(value: Any) -> bool:
    """A finite int or float (JSON's NaN and Infinity parse as floats; a bool is no number)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def _load_gt(data: dict, copy_data: bool) -> COCO:
    # faster-coco-eval annotates ground-truth dicts in place (ignore flags, RLEs): copy a
    # caller's dict so evaluating it leaves it untouched.
    return COCO(copy.deepcopy(data) if copy_data else data, print_function=_log.debug)


def _evaluate(gt: COCO, results: list[dict], iou_type: str) -> list[float]:
    """Runs COCOeval over all ground-truth images; returns the 12 stats as fractions."""
    if not results:
        # Nothing to match: every defined statistic is 0; report 0 everywhere rather than
        # let an empty result set fail inside the library.
        return [0.0] * len(STAT_NAMES)
    detections = gt.loadRes(results)
    evaluator = COCOeval_faster(gt, detections, iouType=iou_type, print_function=_log.debug)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return [float(v) for v in evaluator.stats[: len(STAT_NAMES)]]


def _to_percent(value: float) -> float:
    return value if value == UNDEFINED else 100.0 * value


def named_percent(stats: list[float], iou_type: str) -> dict[str, float]:
    """pycocotools' 12 statistics (fractions) under the names claims use (``bbox_AP``...), in
    percent; ``-1.0`` stays where undefined."""
    return {f"{iou_type}_{name}": _to_percent(v) for name, v in zip(STAT_NAMES, stats)}


# --------------------------------------------------------------------------------------------
# Tensor predictions -> COCO results
# --------------------------------------------------------------------------------------------


def to_coco_results(predictions: Iterable[Mapping[str, Any]], iou_type: str = "bbox") -> list[dict]:
    """Converts model predictions to COCO results entries.

    Args:
        predictions: One dict per image with ``image_id`` (int), ``boxes`` (Tensor[N, 4], xyxy
            pixels), ``scores`` (Tensor[N]), ``labels`` (Tensor[N], dataset category ids) and,
            for ``segm``, ``masks`` (Tensor[N, 1, H, W] or [N, H, W]; probabilities are
            thresholded at 0.5, bool masks taken as they are).
        iou_type: ``bbox`` gives ``bbox`` entries ([x, y, w, h]); ``segm`` gives RLE
            ``segmentation`` entries without ``bbox``, so that the area-range statistics use
            the mask area (as torchvision's reference evaluator does).

    Returns:
        COCO results entries, in prediction order.

    Raises:
        ConfigError: ``iou_type`` is not one of :data:`IOU_TYPES`.
        ValueError: A prediction lacks a key or has inconsistent shapes.
    """
    _check_iou_type(iou_type, key="iou_type")
    results: list[dict] = []
    for pred in predictions:
        results.extend(_prediction_results(pred, iou_type))
    return results


def _prediction_results(pred: Mapping[str, Any], iou_type: str) -> list[dict]:
    image_id, scores, labels = _check_prediction(pred, iou_type)
    geometry: list[Any] = (_boxes_to_xywh(pred["boxes"]) if iou_type == "bbox"
                           else _masks_to_rles(pred["masks"], len(scores), image_id))
    key = _GEOMETRY_KEY[iou_type]
    return [
        {"image_id": image_id, "category_id": label, key: geom, "score": score}
        for label, geom, score in zip(labels, geometry, scores)
    ]


def _check_prediction(pred: Mapping[str, Any], iou_type: str) -> tuple[int, list[float], list[int]]:
    required: tuple[str, ...] = ("image_id", "boxes", "scores", "labels")
    required += ("masks",) if iou_type == "segm" else ()
    missing = [k for k in required if k not in pred]
    if missing:
        where = f"image_id {pred['image_id']}" if "image_id" in pred else "a prediction"
        raise ValueError(f"{where} lacks {', '.join(map(repr, missing))} (iou_type={iou_type})")
    image_id = int(pred["image_id"])
    boxes, scores, labels = pred["boxes"], pred["scores"], pred["labels"]
    n = len(scores)
    if tuple(boxes.shape) != (n, 4) or len(labels) != n:
        raise ValueError(
            f"image_id {image_id}: boxes {tuple(boxes.shape)}, scores ({n},), labels "
            f"({len(labels)},) do not describe the same N detections (boxes must be [N, 4])"
        )
    return image_id, _as_list(scores, float), _as_list(labels, int)


def _as_list(values: Any, kind: type) -> list:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().tolist()
    return [kind(v) for v in values]


def _boxes_to_xywh(boxes: torch.Tensor) -> list[list[float]]:
    xywh = boxes.detach().cpu().to(torch.float64).clone()
    xywh[:, 2:] -= xywh[:, :2]
    return xywh.tolist()


def _masks_to_rles(masks: torch.Tensor, n: int, image_id: int) -> list[dict]:
    if masks.dim() == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.dim() != 3 or masks.shape[0] != n:
        raise ValueError(
            f"image_id {image_id}: masks {tuple(masks.shape)} must be [N, 1, H, W] or "
            f"[N, H, W] with N={n}"
        )
    if n == 0:
        return []
    # pycocotools encodes column-major H x W x N uint8 arrays: in memory, N x W x H row-major.
    # Thresholding straight into that layout, and viewing bool as uint8 (same bytes), makes one
    # pass over the masks instead of three (threshold, copy, transpose), which dominate update()
    # for Mask R-CNN.
    columns = masks.detach().cpu().transpose(1, 2)
    binary = torch.empty(columns.shape, dtype=torch.bool)
    if masks.dtype == torch.bool:
        binary.copy_(columns)
    else:
        torch.gt(columns, _MASK_THRESHOLD, out=binary)
    array = binary.numpy().view(np.uint8).T   # H x W x N, column-major: no copy
    rles = mask_utils.encode(array)
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")  # bytes are not JSON-serialisable
    return rles


# --------------------------------------------------------------------------------------------
# Accumulating evaluator
# --------------------------------------------------------------------------------------------


class CocoEvaluator:
    """Accumulates tensor predictions and computes COCO statistics in percent.

    Evaluation covers **all** ground-truth images, not only those passed to :meth:`update`:
    an image never updated counts its objects as misses. So an evaluation over a subset of a
    split needs a ground truth restricted to that subset.

    Example:
        >>> evaluator = CocoEvaluator("instances_val2017.json", iou_types=("bbox", "segm"))
        >>> for batch in loader:
        ...     evaluator.update(task.predict(model, batch))
        >>> evaluator.compute()["bbox_AP"]
    """

    def __init__(self, gt: str | Path | dict, iou_types: tuple[str, ...] = ("bbox",),
                 label_space: Iterable[int] = ()):
        """Loads and checks the ground truth.

        Args:
            gt: Ground-truth file or an already parsed COCO dict (not modified).
            iou_types: Any of ``bbox``, ``segm``; ``segm`` needs ``masks`` in predictions.
            label_space: Category ids the model can predict (torchvision's COCO heads: 1..90).
                Those the ground truth does not use (COCO's 11 unused ids) are dropped and
                counted in ``{iou_type}_ignored_detections``, as COCOeval ignores them; a label
                outside the label space and the ground truth still raises (a class index
                reported as a category id, a dataset that is not the model's).

        Raises:
            ConfigError: ``iou_types`` is empty or holds an unknown type.
            DataError: The ground truth is missing, not JSON or malformed.
        """
        if isinstance(iou_types, str) or not iou_types:
            raise ConfigError(
                "iou_types", f"need a non-empty tuple; allowed: {', '.join(IOU_TYPES)}"
            )
        for iou_type in iou_types:
            _check_iou_type(iou_type, key="iou_types")
        self.iou_types = tuple(iou_types)
        if isinstance(gt, dict):
            self._gt_name, data = _GT_DICT_NAME, gt
        else:
            self._gt_name = str(gt)
            data = _read_json(self._gt_name)
        validate_ground_truth(data, self._gt_name, self.iou_types)
        self._gt = _load_gt(data, copy_data=isinstance(gt, dict))
        self._image_sizes = {
            img["id"]: (img.get("height"), img.get("width")) for img in self._gt.dataset["images"]
        }
        self._category_ids = set(self._gt.cats)
        self._ignored_ids = set(label_space) - self._category_ids
        self._results: dict[str, list[dict]] = {}
        self._ignored: dict[str, int] = {}
        self.reset()

    def reset(self) -> None:
        """Forgets every prediction passed to :meth:`update`."""
        self._results = {iou_type: [] for iou_type in self.iou_types}
        self._ignored = {iou_type: 0 for iou_type in self.iou_types}

    def update(self, predictions: list[dict]) -> None:
        """Adds one batch of predictions (one dict per image, see :func:`to_coco_results`).

        Predictions are converted to COCO results right away, so tensors (masks in
        particular) are not kept alive until :meth:`compute`.

        Raises:
            DataError: An ``image_id`` or label is not in the ground truth (the model's
                dataset and the annotation file disagree).
            ValueError: A prediction lacks a key or has inconsistent shapes.
        """
        # Convert the whole batch first: a bad prediction must not leave half a batch behind.
        batch: dict[str, list[dict]] = {iou_type: [] for iou_type in self.iou_types}
        ignored = {iou_type: 0 for iou_type in self.iou_types}
        for pred in predictions:
            self._check_image(pred)
            for iou_type in self.iou_types:
                entries = _prediction_results(pred, iou_type)
                kept = [e for e in entries if e["category_id"] not in self._ignored_ids]
                self._check_labels(kept)
                batch[iou_type].extend(kept)
                ignored[iou_type] += len(entries) - len(kept)
        for iou_type, entries in batch.items():
            self._results[iou_type].extend(entries)
            self._ignored[iou_type] += ignored[iou_type]

    def _check_image(self, pred: Mapping[str, Any]) -> None:
        if "image_id" not in pred:
            raise ValueError("a prediction lacks 'image_id'")
        image_id = int(pred["image_id"])
        if image_id not in self._image_sizes:
            raise DataError(
                self._gt_name, f"image_id {image_id} of a prediction is not in ground truth"
            )
        masks = pred.get("masks")
        size = self._image_sizes[image_id]
        if "segm" in self.iou_types and masks is not None and tuple(masks.shape[-2:]) != size:
            # Masks at the network's input resolution would be scored against the wrong pixels.
            raise ValueError(
                f"image_id {image_id}: masks are {tuple(masks.shape[-2:])} (H, W) but the image "
                f"is {size}; paste masks into the original image first"
            )

    def _check_labels(self, entries: list[dict]) -> None:
        unknown = {e["category_id"] for e in entries} - self._category_ids
        if unknown:
            raise DataError(
                self._gt_name,
                f"image_id {entries[0]['image_id']}: labels {sorted(unknown)} are not "
                "ground-truth category ids",
            )

    def compute(self) -> dict[str, float]:
        """Evaluates everything added since the last :meth:`reset`.

        Returns:
            ``{f"{iou_type}_{stat}": value}`` for each IoU type and each of
            :data:`STAT_NAMES`, in percent (0..100); ``-1.0`` where undefined.
        """
        metrics: dict[str, float] = {}
        for iou_type, results in self._results.items():
            # loadRes adds keys to the entries it is given; copies keep ours reusable.
            stats = _evaluate(self._gt, [dict(r) for r in results], iou_type)
            metrics.update(named_percent(stats, iou_type))
            if self._ignored_ids:
                metrics[f"{iou_type}_ignored_detections"] = float(self._ignored[iou_type])
        return metrics
