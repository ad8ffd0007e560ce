"""The YOLO eval path's image geometry against darknet's own (tests/darknet_reference.py): the
same image resized and letterboxed as darknet's evaluation does, and a box mapped back onto the
image as darknet's results file writes it; the tier options choose pjreddie's letterbox."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests import darknet_reference as ref
from zoo_models.darknet.augment import ResizeForEval, darknet_resize, to_original


@pytest.mark.parametrize("in_h,in_w,out_h,out_w", [(30, 47, 13, 19), (17, 11, 32, 32), (48, 64, 37, 64),
                                                   (1, 9, 4, 5), (9, 1, 3, 4)])
def test_darknet_resize_equals_resize_image(in_h, in_w, out_h, out_w):
    image = np.random.default_rng(in_h * in_w).random((3, in_h, in_w), dtype=np.float32)
    ours = darknet_resize(torch.from_numpy(image), out_w, out_h).numpy()
    np.testing.assert_allclose(ours, ref.resize_image(image, out_w, out_h), atol=2e-7, rtol=0)


def test_the_last_row_keeps_darknets_skipped_term():
    """Where float rounding puts the last row's source just below the last source row, darknet
    keeps only (1 - dy) of it; a textbook bilinear resize would not."""
    height_in, height_out = 29, 10
    scale = np.float32(height_in - 1) / np.float32(height_out - 1)
    sy = np.float32(height_out - 1) * scale
    image = np.random.default_rng(0).random((3, height_in, 5), dtype=np.float32) + 0.5
    ours = darknet_resize(torch.from_numpy(image), 5, height_out).numpy()
    np.testing.assert_allclose(ours, ref.resize_image(image, 5, height_out), atol=2e-7, rtol=0)
    if sy < height_in - 1:   # this float32 rounding case: the row darkens
        assert ours[:, -1].mean() < image[:, -1].mean()


@pytest.mark.parametrize("letter_box", [True, False])
@pytest.mark.parametrize("in_h,in_w", [(45, 70), (70, 45), (33, 33)])
def test_eval_input_and_boxes_equal_darknets(in_h, in_w, letter_box):
    net = 32
    image = np.random.default_rng(in_w).random((3, in_h, in_w), dtype=np.float32)
    target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "image_id": 1}
    resized, t = ResizeForEval(net, letter_box)(torch.from_numpy(image), target)
    expected = ref.letterbox_image(image, net) if letter_box else ref.resize_image(image, net, net)
    np.testing.assert_allclose(resized.numpy(), expected, atol=2e-7, rtol=0)
    network_boxes = torch.tensor([[3.5, 2.0, 20.25, 31.0], [-4.0, 10.0, 40.0, 12.5]])
    back = to_original(network_boxes, t["resize"])
    for box, ours in zip(network_boxes.tolist(), back.tolist()):
        x, y, w, h = ref.cocos_box(*box, in_w, in_h, net, letter_box)
        np.testing.assert_allclose([ours[0], ours[1], ours[2] - ours[0], ours[3] - ours[1]], [x, y, w, h],
                                   atol=1e-4)


def test_the_darknet_protocol_letterboxes_when_the_tier_asks(tmp_path):
    """The eval tiers evaluate as their claims' accuracy checker (tests/models/test_omz_protocol.py);
    darknet's geometry stays for the smoke tier (the cfg's letter_box: none, a stretch) and for a
    tier that names protocol darknet with pjreddie's letterbox."""
    from replicate.config.compose import compose_config
    from replicate.resolved import make_spec
    from replicate.runner.worker import build_task
    from zoo_models.yolo.omz_protocol import OmzResize

    darknet = ["model.tiers.eval.test.protocol=darknet", "model.tiers.eval.test.nms=null",
               "model.tiers.eval.test.letter_box=true"]
    for tier, extra, kind, letter_box in (("eval", [], OmzResize, None), ("eval", darknet, ResizeForEval, True),
                                          ("smoke", [], ResizeForEval, False)):
        cfg = compose_config(["model=yolov3", f"tier={tier}", f"results_dir={tmp_path}", *extra])
        transform = build_task(make_spec(cfg, None), cfg).pipeline.eval_transform()
        assert type(transform) is kind and getattr(transform, "letter_box", None) == letter_box, (tier, extra)


@pytest.mark.parametrize("scale_x_y", [1.0, 1.1])
def test_detections_equal_darknets_threshold_and_nms(scale_x_y):
    """Raw [yolo] maps decoded, thresholded (0.005) and suppressed (0.45 per class) as darknet's
    get_yolo_detections and do_nms_sort; boxes compared before the clip darknet applies when it
    writes them."""
    from zoo_models.yolo.loss import YoloHead, postprocess

    net, classes = 64, 3
    anchors = [[10.0, 14.0], [23.0, 27.0], [37.0, 58.0], [81.0, 82.0]]
    layers = [{"anchors": anchors, "mask": [2, 3], "classes": classes, "scale_x_y": scale_x_y},
              {"anchors": anchors, "mask": [0, 1], "classes": classes, "scale_x_y": scale_x_y}]
    heads = [YoloHead(index=i, anchors=torch.tensor(anchors), mask=layer["mask"], classes=classes,
                      ignore_thresh=0.7, iou_thresh=1.0, scale_x_y=scale_x_y, iou_loss="mse", iou_normalizer=1.0,
                      obj_normalizer=1.0, cls_normalizer=1.0, label_smooth_eps=0.0, max_delta=5.0, new_coords=False)
             for i, layer in enumerate(layers)]
    generator = torch.Generator().manual_seed(int(scale_x_y * 10))
    outputs = [torch.randn(1, 2 * (5 + classes), size, size, generator=generator) * 2 for size in (2, 4)]
    (ours,) = postprocess(outputs, heads, (net, net))
    expected = ref.yolo_detections([o[0].double().numpy() for o in outputs], layers, net)
    per_class = [sum(1 for c, _, _ in expected if c == k) for k in range(classes)]
    assert len(expected) > 20 and max(per_class) < 100   # below the per-class cap (120 candidates < 1000)
    got = sorted((int(c), round(float(s), 5)) for c, s in zip(ours["labels"], ours["scores"]))
    assert got == sorted((c, round(p, 5)) for c, p, _ in expected)
    for c, p, box in expected:   # each surviving box, clipped as darknet writes it
        at = ((ours["labels"] == c) & ((ours["scores"] - p).abs() < 1e-5)).nonzero()[0, 0]
        clipped = [min(max(v, 0.0), float(net)) for v in box]
        np.testing.assert_allclose(ours["boxes"][at].tolist(), clipped, atol=1e-3)
