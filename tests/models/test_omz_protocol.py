"""The yolov3/yolov4 eval protocol (models/zoo_models/yolo/omz_protocol.py) against Open Model Zoo's
accuracy checker restated in numpy (tests/omz_reference.py): the same raw [yolo] maps give the
same candidates, scores, labels, NMS survivors and clipped boxes; the image is resized as its
cv2.resize; and the eval tiers choose this protocol with the NMS their claims were measured with."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests import omz_reference as ref
from zoo_models.yolo import omz_protocol as omz
from zoo_models.yolo.loss import YoloHead

ANCHORS = [10.0, 13.0, 16.0, 30.0, 33.0, 23.0, 30.0, 61.0, 62.0, 45.0, 59.0, 119.0]   # yolov3's first six
MASKS = [[3, 4, 5], [0, 1, 2]]   # coarse layer first, as yolov3.cfg


def _heads(classes: int, scale_x_y: float = 1.0) -> list[YoloHead]:
    anchors = torch.tensor(ANCHORS).view(-1, 2)
    return [YoloHead(index=i, anchors=anchors, mask=mask, classes=classes, ignore_thresh=0.7, iou_thresh=1.0,
                     scale_x_y=scale_x_y, iou_loss="mse", iou_normalizer=1.0, obj_normalizer=1.0,
                     cls_normalizer=1.0, label_smooth_eps=0.0, max_delta=5.0, new_coords=False)
            for i, mask in enumerate(MASKS)]


def _outputs(classes: int, grids: tuple[int, ...], seed: int, log_wh: float = 2.0) -> list[torch.Tensor]:
    """Raw maps [1, 3*(5+C), g, g] whose objectness mostly passes 0.001 and whose boxes, about
    e^log_wh times their anchors, overlap a lot at 2 (NMS has work)."""
    generator = torch.Generator().manual_seed(seed)
    maps = []
    for g in grids:
        raw = torch.randn(1, 3, 5 + classes, g, g, generator=generator, dtype=torch.float64) * 1.5
        raw[:, :, 2:4] = raw[:, :, 2:4] * 0.5 + log_wh
        maps.append(raw.reshape(1, -1, g, g))
    return maps


def _reference(outputs: list[torch.Tensor], classes: int, input_size: int, image_wh: tuple[int, int],
               nms_type: str, overlap: float = 0.5) -> dict[str, np.ndarray]:
    """The checker on the same maps, in its HWB layout (the TF model's NHWC output)."""
    layers = [o[0].permute(1, 2, 0).numpy() for o in outputs]
    masked = [[v for a in mask for v in ANCHORS[2 * a:2 * a + 2]] for mask in MASKS]
    return ref.accuracy_checker(layers, masked, classes, input_size, *image_wh, nms_type, overlap=overlap)


def _by_score(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray):
    order = np.argsort(-scores, kind="stable")
    return boxes[order], scores[order], labels[order]


def test_candidates_equal_the_adapters_parse_output():
    """Every box above objectness 0.001, one label each, relative to the image, in the adapter's
    order; yolov4's scale_x_y does not enter (the adapter has none)."""
    classes, size = 4, 128
    outputs = _outputs(classes, (4, 8), seed=1)
    expected = ref.adapter([o[0].permute(1, 2, 0).numpy() for o in outputs],
                           [[v for a in mask for v in ANCHORS[2 * a:2 * a + 2]] for mask in MASKS], classes, size, size)
    for scale_x_y in (1.0, 1.2):
        (ours,) = omz.decode(outputs, _heads(classes, scale_x_y), (size, size))
        boxes = np.stack([expected["x_mins"], expected["y_mins"], expected["x_maxs"], expected["y_maxs"]], 1)
        assert len(expected["scores"]) > 200 and len(ours["scores"]) == len(expected["scores"])
        np.testing.assert_array_equal(ours["labels"].numpy(), expected["labels"])
        np.testing.assert_allclose(ours["scores"].numpy(), expected["scores"], rtol=1e-12, atol=0)
        np.testing.assert_allclose(ours["boxes"].numpy(), boxes, rtol=0, atol=1e-12)


@pytest.mark.parametrize("nms_type", ["nms", "diou_nms"])
def test_detections_equal_the_checkers_postprocessing(nms_type):
    """Resized to a 640x480 image, filtered at 0.001, suppressed over all classes at 0.5 with
    +1-pixel widths (DIoU with power 0.6 for yolov4), clipped: every survivor, no candidate cap."""
    classes, size, image_wh = 3, 416, (640, 480)
    outputs = _outputs(classes, (13, 26), seed=2)
    survivors = _reference(outputs, classes, size, image_wh, nms_type)
    assert int(survivors["candidates"]) > 1000           # more than darknet protocol's PRE_NMS_TOPK keeps
    assert np.bincount(survivors["labels"]).max() > 100  # the metric's max_detections takes part
    expected = ref.metric_detections(survivors)
    (ours,) = omz.postprocess(outputs, _heads(classes), (size, size), [image_wh], nms_type)
    got = _by_score(ours["boxes"].numpy(), ours["scores"].numpy(), ours["labels"].numpy())
    want = _by_score(expected["boxes"], expected["scores"], expected["labels"])
    assert len(got[1]) == len(want[1]), (len(got[1]), len(want[1]))
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12, atol=0)
    np.testing.assert_array_equal(got[2], want[2])
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-9)
    # the inputs tell the checker's settings apart: darknet's NMS 0.45 and the other NMS kind differ
    other = "nms" if nms_type == "diou_nms" else "diou_nms"
    for changed in (_reference(outputs, classes, size, image_wh, nms_type, overlap=0.45),
                    _reference(outputs, classes, size, image_wh, other)):
        assert not np.array_equal(np.sort(ref.metric_detections(changed)["scores"]), np.sort(want[1]))


def test_every_candidate_enters_nms():
    """No candidate cap (the checker's nms has no keep_top_k): with small boxes of 30 classes,
    over 1000 detections reach the metric, those ranked past 1000 among the candidates included."""
    classes, size, image_wh = 30, 416, (500, 375)
    outputs = _outputs(classes, (13, 26), seed=4, log_wh=0.0)
    expected = ref.metric_detections(_reference(outputs, classes, size, image_wh, "nms"))
    assert len(expected["scores"]) > 1000
    (ours,) = omz.postprocess(outputs, _heads(classes), (size, size), [image_wh], "nms")
    assert len(ours["scores"]) == len(expected["scores"])
    np.testing.assert_allclose(np.sort(ours["scores"].numpy()), np.sort(expected["scores"]), rtol=1e-12, atol=0)


def test_the_boundary_pixel_decides_between_two_boxes():
    """Two 10-pixel boxes 5 pixels apart: IoU 1/3 without the boundary pixel, 0.375 with it; at an
    overlap of 0.35 only the checker's +1 convention suppresses the second."""
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]], dtype=torch.float64)
    scores = torch.tensor([0.9, 0.8], dtype=torch.float64)
    x1, y1, x2, y2 = boxes.numpy().T
    assert omz.nms_keep(boxes, scores, 0.35).tolist() == ref.nms(x1, y1, x2, y2, scores.numpy(), 0.35) == [0]
    assert ref.nms(x1, y1, x2, y2, scores.numpy(), 0.35, include_boundaries=False) == [0, 1]


@pytest.mark.parametrize("in_hw", [(480, 640), (37, 29), (200, 200)])
def test_the_eval_resize_equals_opencv_inter_linear(in_hw):
    """The checker's resize (cv2.resize INTER_LINEAR on the float image), stretched to the
    network size; the record maps a network box back onto the image."""
    cv2 = pytest.importorskip("cv2")
    image = np.random.default_rng(in_hw[1]).random((3, *in_hw), dtype=np.float32)
    target = {"boxes": torch.tensor([[4.0, 6.0, 20.0, 30.0]]), "labels": torch.tensor([1]), "image_id": 1}
    resized, t = omz.OmzResize(64)(torch.from_numpy(image), target)
    expected = cv2.resize(image.transpose(1, 2, 0), (64, 64), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
    np.testing.assert_allclose(resized.numpy(), expected, atol=2e-6, rtol=0)
    assert omz.original_size(t) == (in_hw[1], in_hw[0])
    np.testing.assert_allclose(t["boxes"][0].tolist(), [4 * 64 / in_hw[1], 6 * 64 / in_hw[0],
                                                        20 * 64 / in_hw[1], 30 * 64 / in_hw[0]], rtol=1e-6)


def test_the_yolo_eval_tiers_choose_the_checkers_protocol(tmp_path):
    from replicate.config.compose import compose_config
    from replicate.config.schema import OMZ_NMS_KINDS

    assert tuple(omz.NMS_KINDS) == OMZ_NMS_KINDS   # the schema's names are the protocol's
    for model, nms_kind in (("yolov3", "nms"), ("yolov4", "diou_nms")):
        for tier in ("eval", "full"):
            cfg = compose_config([f"model={model}", f"tier={tier}", f"results_dir={tmp_path}"])
            test = cfg.model.tiers[tier].test
            assert (test.protocol, test.nms, test.letter_box) == ("omz_accuracy_checker", nms_kind, None)
        smoke = compose_config([f"model={model}", "tier=smoke", f"results_dir={tmp_path}"]).model.tiers.smoke.test
        assert (smoke.protocol, smoke.nms) == (None, None)   # the smoke tier keeps darknet's protocol


@pytest.mark.parametrize("override,key", [
    ("model.tiers.eval.test.protocol=omz", "model.tiers.eval.test.protocol"),
    ("model.tiers.eval.test.nms=null", "model.tiers.eval.test.nms"),
    ("model.tiers.eval.test.letter_box=true", "model.tiers.eval.test.letter_box"),
    ("model.tiers.smoke.test.nms=nms", "model.tiers.smoke.test.nms"),
])
def test_a_wrong_protocol_setting_names_its_key(override, key, tmp_path):
    from replicate.config.compose import compose_config
    from replicate.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        compose_config(["model=yolov4", "tier=eval", f"results_dir={tmp_path}", override])
    assert key in str(caught.value)


def test_an_image_without_annotations_gets_no_detections(tmp_path, monkeypatch):
    """The checker's COCO converter scores only images with an annotation: the eval predictions
    of the last layout image (none) are empty, the others' are the protocol's, in category ids."""
    from replicate.config.compose import compose_config
    from replicate.resolved import make_spec
    from replicate.runner.worker import build_task
    from tests.coco_layout import write_coco_layout

    monkeypatch.setenv("ZOO_DATA_ROOT", str(tmp_path / "data"))
    write_coco_layout(tmp_path / "data" / "coco2017", val_images=3)
    cfg = compose_config(["model=yolov3", "tier=eval", "hardware=cpu", f"results_dir={tmp_path / 'r'}"])
    task = build_task(make_spec(cfg, None), cfg)
    dataset = task.build_dataset(cfg.model.tiers.eval.eval_split, train=False)
    targets = [dataset[i][1] for i in range(len(dataset))]
    classes = 80
    outputs = _outputs(classes, (2, 4), seed=3)
    outputs = [o.expand(len(targets), -1, -1, -1).float() for o in outputs]
    preds = task.pipeline.omz_predictions(outputs, _heads(classes), (416, 416), targets)
    counts = [len(p["scores"]) for p in preds]
    assert counts[-1] == 0 and min(counts[:-1]) > 0, counts
    assert set(preds[0]["labels"].tolist()) <= set(task.category_ids or [])
