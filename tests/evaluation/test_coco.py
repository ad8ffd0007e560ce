"""COCO evaluation: faster-coco-eval agrees with pycocotools; tensors, files and errors behave."""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from faster_coco_eval.core import mask as fast_mask
from pycocotools.coco import COCO as RefCOCO
from pycocotools.cocoeval import COCOeval as RefCOCOeval

from replicate.errors import ConfigError, DataError
from replicate.evaluation.coco import (
    STAT_NAMES,
    CocoEvaluator,
    evaluate_files,
    to_coco_results,
    write_results,
)

N_IMAGES = 20
CATEGORY_IDS = (1, 2, 5)  # non-contiguous on purpose, like COCO's ids


# --------------------------------------------------------------------------------------------
# Synthetic data
# --------------------------------------------------------------------------------------------


def _polygon(rng: np.random.Generator, cx: float, cy: float, rx: float, ry: float) -> list[float]:
    angles = np.sort(rng.uniform(0, 2 * np.pi, 9))
    radii = rng.uniform(0.7, 1.0, 9)
    xs = cx + rx * radii * np.cos(angles)
    ys = cy + ry * radii * np.sin(angles)
    return np.stack([xs, ys], axis=1).ravel().round(2).tolist()


def _rle(polygon: list[float], h: int, w: int) -> dict:
    return mask_utils.merge(mask_utils.frPyObjects([polygon], h, w))


def _random_object(rng: np.random.Generator, h: int, w: int) -> list[float]:
    # Log-uniform sizes so that small (<32^2), medium and large objects all occur.
    rx, ry = np.exp(rng.uniform(np.log(4), np.log(110), 2))
    rx, ry = min(rx, w / 2 - 1), min(ry, h / 2 - 1)
    cx, cy = rng.uniform(rx, w - rx), rng.uniform(ry, h - ry)
    return _polygon(rng, cx, cy, rx, ry)


def make_ground_truth(seed: int = 0) -> dict:
    """20 images, 3 categories, polygon objects of all sizes, two crowd regions."""
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for image_id in range(1, N_IMAGES + 1):
        h, w = int(rng.integers(160, 240)), int(rng.integers(200, 320))
        images.append({"id": image_id, "height": h, "width": w, "file_name": f"{image_id}.png"})
        for k in range(int(rng.integers(1, 7))):
            polygon = _random_object(rng, h, w)
            rle = _rle(polygon, h, w)
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": int(rng.choice(CATEGORY_IDS)),
                "segmentation": [polygon],
                "area": float(mask_utils.area(rle)),
                "bbox": mask_utils.toBbox(rle).tolist(),
                "iscrowd": int(image_id <= 2 and k == 0),
            })
    categories = [{"id": c, "name": f"class{c}"} for c in CATEGORY_IDS]
    return {"images": images, "annotations": annotations, "categories": categories}


def _jitter_polygon(rng: np.random.Generator, polygon: list[float], scale: float) -> list[float]:
    points = np.asarray(polygon).reshape(-1, 2)
    center = points.mean(axis=0)
    points = center + (points - center) * rng.normal(1.0, 0.05) + rng.normal(0, 0.04 * scale, 2)
    return points.ravel().round(2).tolist()


def _detection(rng, image: dict, category_id: int, polygon: list[float], box: list[float]) -> dict:
    rle = _rle(polygon, image["height"], image["width"])
    rle["counts"] = rle["counts"].decode("ascii")
    return {
        "image_id": image["id"],
        "category_id": category_id,
        "bbox": [round(v, 2) for v in box],
        "segmentation": rle,
        "score": round(float(rng.uniform(0.05, 1.0)), 4),
    }


def make_detections(gt: dict, seed: int = 1) -> list[dict]:
    """Jittered hits (some with a wrong class or duplicated), misses and false positives."""
    rng = np.random.default_rng(seed)
    images = {img["id"]: img for img in gt["images"]}
    detections = []
    for ann in gt["annotations"]:
        if ann["iscrowd"] or rng.random() < 0.15:  # a miss
            continue
        image = images[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        scale = max(w, h)
        box = [x + rng.normal(0, 0.08 * w), y + rng.normal(0, 0.08 * h)]
        box += [w * rng.normal(1, 0.1), h * rng.normal(1, 0.1)]
        category = ann["category_id"] if rng.random() < 0.9 else int(rng.choice(CATEGORY_IDS))
        copies = 2 if rng.random() < 0.1 else 1
        for _ in range(copies):
            polygon = _jitter_polygon(rng, ann["segmentation"][0], scale)
            detections.append(_detection(rng, image, category, polygon, box))
    for image in gt["images"]:
        for _ in range(int(rng.integers(0, 3))):  # false positives
            polygon = _random_object(rng, image["height"], image["width"])
            box = mask_utils.toBbox(_rle(polygon, image["height"], image["width"])).tolist()
            detections.append(_detection(rng, image, int(rng.choice(CATEGORY_IDS)), polygon, box))
    return detections


def perfect_detections(gt: dict) -> list[dict]:
    images = {img["id"]: img for img in gt["images"]}
    rng = np.random.default_rng(0)
    detections = []
    for ann in gt["annotations"]:
        if not ann["iscrowd"]:
            image = images[ann["image_id"]]
            polygon = ann["segmentation"][0]
            det = _detection(rng, image, ann["category_id"], polygon, ann["bbox"])
            detections.append(det | {"score": 1.0})
    return detections


def _without_bbox(detections: list[dict]) -> list[dict]:
    # Mask-only results make the area ranges use the mask area, as CocoEvaluator's segm does.
    return [{k: v for k, v in d.items() if k != "bbox"} for d in detections]


def _write(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("coco")
    gt = make_ground_truth()
    detections = make_detections(gt)
    return {
        "gt_data": gt,
        "detections": detections,
        "gt": _write(root / "gt.json", gt),
        "dets": _write(root / "dets.json", detections),
        "dets_masks_only": _write(root / "dets_masks.json", _without_bbox(detections)),
        "perfect": _write(root / "perfect.json", perfect_detections(gt)),
        "root": root,
    }


def pycocotools_stats(gt_path: Path, dets_path: Path, iou_type: str) -> list[float]:
    gt = RefCOCO(str(gt_path))
    evaluator = RefCOCOeval(gt, gt.loadRes(str(dets_path)), iou_type)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return [float(v) for v in evaluator.stats]


def predictions_from(detections: list[dict], gt: dict, float_masks: bool = True) -> list[dict]:
    """Turns COCO results back into the tensors a model's predict() returns."""
    by_image = defaultdict(list)
    for det in detections:
        by_image[det["image_id"]].append(det)
    predictions = []
    for image in gt["images"]:
        dets = by_image[image["id"]]
        boxes = torch.tensor([d["bbox"] for d in dets], dtype=torch.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        # faster-coco-eval's decode: pycocotools' warns under numpy 2 (DeprecationWarning).
        masks = torch.zeros(0, image["height"], image["width"], dtype=torch.uint8)
        if dets:
            masks = torch.from_numpy(np.stack([fast_mask.decode(d["segmentation"]) for d in dets]))
        # Probabilities on both sides of the 0.5 threshold, shaped like Mask R-CNN's output.
        masks = (0.1 + 0.8 * masks.float())[:, None] if float_masks else masks.bool()
        predictions.append({
            "image_id": image["id"],
            "boxes": boxes.float(),
            "scores": torch.tensor([d["score"] for d in dets], dtype=torch.float32),
            "labels": torch.tensor([d["category_id"] for d in dets], dtype=torch.int64),
            "masks": masks,
        })
    return predictions


# --------------------------------------------------------------------------------------------
# Agreement with pycocotools
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("iou_type", "dets_key"),
    # segm twice: with boxes present the area ranges use the box area, without them the mask's.
    [("bbox", "dets"), ("segm", "dets"), ("segm", "dets_masks_only")],
)
def test_stats_equal_pycocotools(files, iou_type, dets_key):
    ours = evaluate_files(files["gt"], files[dets_key], iou_type)
    reference = pycocotools_stats(files["gt"], files[dets_key], iou_type)
    assert len(ours) == len(STAT_NAMES) == len(reference)
    np.testing.assert_allclose(ours, reference, atol=1e-4)
    # The synthetic set must be informative: neither trivial nor hopeless, all sizes present.
    assert 0.1 < ours[0] < 0.9
    assert all(v > 0 for v in ours)


def test_area_ranges_all_populated(files):
    areas = [a["area"] for a in files["gt_data"]["annotations"] if not a["iscrowd"]]
    assert min(areas) < 32**2 and max(areas) > 96**2
    assert any(32**2 < a < 96**2 for a in areas)


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_perfect_detections_give_ap_one(files, iou_type):
    stats = evaluate_files(files["gt"], files["perfect"], iou_type)
    assert stats[STAT_NAMES.index("AP")] == pytest.approx(1.0)
    assert stats[STAT_NAMES.index("AP50")] == pytest.approx(1.0)
    assert stats[STAT_NAMES.index("AR100")] == pytest.approx(1.0)


def test_string_paths_accepted(files):
    as_str = evaluate_files(str(files["gt"]), str(files["dets"]))
    assert as_str == evaluate_files(files["gt"], files["dets"])


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_empty_detections_give_zeros(files, iou_type):
    empty = _write(files["root"] / "empty.json", [])
    assert evaluate_files(files["gt"], empty, iou_type) == [0.0] * len(STAT_NAMES)


def test_write_results_round_trips(files, tmp_path):
    path = write_results(files["detections"], tmp_path / "sub" / "out.json")
    assert json.loads(path.read_text()) == files["detections"]
    assert evaluate_files(files["gt"], path) == evaluate_files(files["gt"], files["dets"])


def _bad_detections(files) -> dict[str, tuple[object, str, str]]:
    det = files["detections"][0]
    return {
        "not a list": ({"annotations": []}, "bbox", "must be a JSON list"),
        "entry not object": ([1, 2], "bbox", "detection 0 is not an object"),
        "missing bbox": ([{k: v for k, v in det.items() if k != "bbox"}], "bbox", "'bbox'"),
        "missing segmentation": (
            [{k: v for k, v in det.items() if k != "segmentation"}], "segm", "'segmentation'"
        ),
        "missing score": ([{k: v for k, v in det.items() if k != "score"}], "bbox", "'score'"),
        "unknown image": ([det | {"image_id": 999}], "bbox", "image_id 999 not in ground truth"),
        "unknown category": ([det | {"category_id": 0}], "bbox", "category_id 0 not in ground"),
        "short bbox": ([det | {"bbox": [1, 2, 3]}], "bbox", "4 numbers"),
    }


@pytest.mark.parametrize(
    "case",
    ["not a list", "entry not object", "missing bbox", "missing segmentation", "missing score",
     "unknown image", "unknown category", "short bbox"],
)
def test_bad_detections_name_the_file(files, tmp_path, case):
    content, iou_type, fragment = _bad_detections(files)[case]
    path = _write(tmp_path / "bad.json", content)
    with pytest.raises(DataError, match=fragment) as info:
        evaluate_files(files["gt"], path, iou_type)
    assert info.value.path == str(path)


def _bad_ground_truths(gt: dict) -> dict[str, tuple[object, str, str]]:
    no_area = copy.deepcopy(gt)
    del no_area["annotations"][3]["area"]
    no_size = copy.deepcopy(gt)
    del no_size["images"][0]["height"]
    return {
        "not an object": ([], "bbox", "must be a JSON object"),
        "no images": ({k: v for k, v in gt.items() if k != "images"}, "bbox", "'images'"),
        "annotation lacks area": (no_area, "bbox", r"annotations\[3\] lacks 'area'"),
        "image lacks height for segm": (no_size, "segm", r"images\[0\] lacks 'height'"),
    }


@pytest.mark.parametrize(
    "case", ["not an object", "no images", "annotation lacks area", "image lacks height for segm"]
)
def test_bad_ground_truth_names_the_file(files, tmp_path, case):
    content, iou_type, fragment = _bad_ground_truths(files["gt_data"])[case]
    path = _write(tmp_path / "gt_bad.json", content)
    with pytest.raises(DataError, match=fragment) as info:
        evaluate_files(path, files["dets"], iou_type)
    assert info.value.path == str(path)


@pytest.mark.parametrize("which", ["annotations", "detections"])
def test_missing_file(files, tmp_path, which):
    paths = {"annotations": files["gt"], "detections": files["dets"]}
    paths[which] = tmp_path / "nope.json"
    with pytest.raises(DataError, match="file not found") as info:
        evaluate_files(**paths)
    assert info.value.path == str(tmp_path / "nope.json")


@pytest.mark.parametrize("which", ["annotations", "detections"])
def test_not_json(files, tmp_path, which):
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    paths = {"annotations": files["gt"], "detections": files["dets"]} | {which: bad}
    with pytest.raises(DataError, match="not valid JSON") as info:
        evaluate_files(**paths)
    assert info.value.path == str(bad)


def test_unknown_iou_type(files):
    with pytest.raises(ConfigError, match="allowed: bbox, segm") as info:
        evaluate_files(files["gt"], files["dets"], "keypoints")
    assert info.value.key == "iou_type"


# --------------------------------------------------------------------------------------------
# Tensor predictions
# --------------------------------------------------------------------------------------------


def test_to_coco_results_converts_boxes_and_masks():
    masks = torch.zeros(1, 1, 6, 8)
    masks[0, 0, 1:3, 2:6] = 0.7   # above the threshold: 8 pixels
    masks[0, 0, 4:6, 0:8] = 0.3   # below it
    pred = {"image_id": 4, "boxes": torch.tensor([[10.0, 20.0, 30.0, 60.0]]),
            "scores": torch.tensor([0.5]), "labels": torch.tensor([2]), "masks": masks}
    (box,) = to_coco_results([pred], "bbox")
    assert box == {"image_id": 4, "category_id": 2, "bbox": [10.0, 20.0, 20.0, 40.0], "score": 0.5}
    (segm,) = to_coco_results([pred], "segm")
    assert "bbox" not in segm and isinstance(segm["segmentation"]["counts"], str)
    decoded = fast_mask.decode(segm["segmentation"])
    assert decoded.shape == (6, 8) and decoded.sum() == 8 and decoded[1:3, 2:6].all()


def test_evaluator_matches_files(files):
    evaluator = CocoEvaluator(files["gt"], iou_types=("bbox", "segm"))
    predictions = predictions_from(files["detections"], files["gt_data"])
    # Several update() calls, as batches arrive.
    for start in range(0, len(predictions), 8):
        evaluator.update(predictions[start:start + 8])
    metrics = evaluator.compute()
    assert set(metrics) == {f"{t}_{s}" for t in ("bbox", "segm") for s in STAT_NAMES}
    bbox = evaluate_files(files["gt"], files["dets"], "bbox")
    segm = evaluate_files(files["gt"], files["dets_masks_only"], "segm")
    for iou_type, stats in (("bbox", bbox), ("segm", segm)):
        for name, value in zip(STAT_NAMES, stats):
            assert metrics[f"{iou_type}_{name}"] == pytest.approx(100 * value, abs=1e-4), name
    assert evaluator.compute() == metrics  # compute() does not consume the predictions


def test_evaluator_perfect_predictions_from_dict(files):
    gt = files["gt_data"]
    before = copy.deepcopy(gt)
    evaluator = CocoEvaluator(gt, iou_types=("bbox", "segm"))
    evaluator.update(predictions_from(perfect_detections(gt), gt, float_masks=False))
    metrics = evaluator.compute()
    assert metrics["bbox_AP"] == pytest.approx(100.0)
    assert metrics["segm_AP"] == pytest.approx(100.0)
    assert gt == before  # the caller's dict is not annotated in place


def test_evaluator_counts_images_without_predictions_as_misses(files):
    gt = files["gt_data"]
    predictions = predictions_from(perfect_detections(gt), gt)
    evaluator = CocoEvaluator(files["gt"])
    evaluator.update(predictions[: N_IMAGES // 2])
    half = evaluator.compute()["bbox_AR100"]
    assert 0.0 < half < 100.0


def test_evaluator_reset_and_empty(files):
    evaluator = CocoEvaluator(files["gt"])
    assert set(evaluator.compute().values()) == {0.0}
    evaluator.update(predictions_from(files["detections"], files["gt_data"]))
    assert evaluator.compute()["bbox_AP"] > 0
    evaluator.reset()
    assert set(evaluator.compute().values()) == {0.0}


def test_evaluator_rejects_unknown_image_and_label(files):
    evaluator = CocoEvaluator(files["gt"])
    pred = predictions_from(files["detections"], files["gt_data"])[0]
    with pytest.raises(DataError, match="image_id 999") as info:
        evaluator.update([pred | {"image_id": 999}])
    assert info.value.path == str(files["gt"])
    with pytest.raises(DataError, match=r"labels \[0\]"):
        evaluator.update([pred, pred | {"labels": torch.zeros_like(pred["labels"])}])
    # A rejected batch is dropped whole, not half-added.
    assert set(evaluator.compute().values()) == {0.0}


def test_evaluator_rejects_bad_shapes(files):
    evaluator = CocoEvaluator(files["gt"], iou_types=("bbox", "segm"))
    pred = predictions_from(files["detections"], files["gt_data"])[0]
    with pytest.raises(ValueError, match=r"masks are \(10, 10\)"):
        evaluator.update([pred | {"masks": torch.zeros(len(pred["scores"]), 1, 10, 10)}])
    with pytest.raises(ValueError, match="'masks'"):
        evaluator.update([{k: v for k, v in pred.items() if k != "masks"}])
    with pytest.raises(ValueError, match="boxes"):
        evaluator.update([pred | {"boxes": pred["boxes"][:, :3]}])


def test_evaluator_config_errors(files, tmp_path):
    with pytest.raises(ConfigError, match="allowed: bbox, segm") as info:
        CocoEvaluator(files["gt"], iou_types=("bbox", "keypoints"))
    assert info.value.key == "iou_types"
    with pytest.raises(ConfigError):
        CocoEvaluator(files["gt"], iou_types=())
    with pytest.raises(DataError, match="file not found"):
        CocoEvaluator(tmp_path / "missing.json")


def test_labels_the_head_can_predict_but_the_ground_truth_does_not_use_are_ignored(files):
    """torchvision's COCO heads predict ids 1..90, 11 of them unused by COCO: COCOeval (and the
    reference evaluation) ignores them, so they are dropped and counted, never an error; a label
    outside the head's label space still is one."""
    import torch

    gt = files["gt_data"]
    perfect = predictions_from(perfect_detections(gt), gt)
    unused = next(c for c in range(1, 91) if c not in CATEGORY_IDS)
    stray = {"image_id": perfect[0]["image_id"], "boxes": torch.tensor([[1.0, 1.0, 20.0, 20.0]]),
             "scores": torch.tensor([0.99]), "labels": torch.tensor([unused])}
    evaluator = CocoEvaluator(gt, iou_types=("bbox",), label_space=range(1, 91))
    evaluator.update([*perfect, stray])
    metrics = evaluator.compute()
    assert metrics["bbox_AP"] == pytest.approx(100.0) and metrics["bbox_ignored_detections"] == 1.0
    with pytest.raises(DataError, match=f"labels \\[{unused}\\] are not ground-truth category ids"):
        CocoEvaluator(gt, iou_types=("bbox",)).update([stray])   # no label space: an error, as before
    background = {**stray, "labels": torch.tensor([0])}
    with pytest.raises(DataError, match="labels \\[0\\]"):
        evaluator.update([background])
