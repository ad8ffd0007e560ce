"""yolov3 trains with pjreddie's load_data_detection, restated here in numpy.

The restatement follows pjreddie/darknet at the YOLOv3 release (commit e84933bf, 2018-03-25):
src/data.c ``load_data_detection`` (the dw/dh/new_ar/scale/dx/dy draws), src/utils.c
``rand_uniform``, src/image.c ``place_image`` (integer source coordinates, ``set_pixel`` inside
the canvas only) and ``flip_image``, src/data.c ``correct_boxes`` and ``fill_truth_detection``
(boxes below .001 dropped). All in float32, as darknet computes. Both sides read one scripted
stream of uniform fractions, so they see the same draws.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.models.test_yolo import make_task
from zoo_models.darknet.augment import PJREDDIE, AugmentConfig, _Random, pjreddie_item

F32 = np.float32


class ScriptedRandom(_Random):
    """The augmentation stream with its fractions read from a script (both sides read it)."""

    def __init__(self, fractions: list[float]):
        super().__init__(0)
        self.fractions = list(fractions)

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.fractions.pop(0)


def rand_uniform(u: float, low, high) -> np.float32:
    """utils.c rand_uniform, ``(float)rand()/RAND_MAX`` being ``u``."""
    low, high = F32(low), F32(high)
    if high < low:
        low, high = high, low
    return F32(u) * (high - low) + low


def darknet_sample(image: np.ndarray, boxes: np.ndarray, w: int, h: int, jitter: float,
                   us: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """One load_data_detection sample (no colour distortion): the canvas [3,h,w] and the
    kept truths as (left, top, right, bottom) fractions of the canvas."""
    c, oh, ow = image.shape
    dw, dh = F32(jitter) * F32(ow), F32(jitter) * F32(oh)
    num = F32(ow) + rand_uniform(us[0], -dw, dw)
    new_ar = num / (F32(oh) + rand_uniform(us[1], -dh, dh))
    scale = rand_uniform(us[2], .25, 2)
    if new_ar < 1:
        nh = scale * F32(h)
        nw = nh * new_ar
    else:
        nw = scale * F32(w)
        nh = nw / new_ar
    dx = rand_uniform(us[3], 0, F32(w) - nw)
    dy = rand_uniform(us[4], 0, F32(h) - nh)
    flip = us[5] < 0.5
    # place_image(orig, nw, nh, dx, dy, sized): float arguments truncated to int parameters
    iw, ih, idx, idy = int(nw), int(nh), int(dx), int(dy)
    sized = np.full((c, h, w), 0.5, F32)
    for y in range(ih):
        for x in range(iw):
            rx = int((F32(x) / F32(iw)) * F32(ow))
            ry = int((F32(y) / F32(ih)) * F32(oh))
            if 0 <= x + idx < w and 0 <= y + idy < h:
                sized[:, y + idy, x + idx] = image[:, ry, rx]
    if flip:
        sized = sized[:, :, ::-1]
    # fill_truth_detection(..., flip, -dx/w, -dy/h, nw/w, nh/h) -> correct_boxes
    ddx, ddy, sx, sy = -dx / F32(w), -dy / F32(h), nw / F32(w), nh / F32(h)
    truths = []
    for left, top, right, bottom in boxes:
        left, right = left * sx - ddx, right * sx - ddx
        top, bottom = top * sy - ddy, bottom * sy - ddy
        if flip:
            left, right = F32(1.0 - float(right)), F32(1.0 - float(left))
        left, right, top, bottom = (F32(min(max(v, F32(0)), F32(1))) for v in (left, right, top, bottom))
        if float(right - left) < .001 or float(bottom - top) < .001:
            continue
        truths.append((left, top, right, bottom))
    return sized, np.array(truths, F32).reshape(-1, 4)


def _product(image: torch.Tensor, boxes: torch.Tensor, size: int, jitter: float, us: list[float]):
    cfg = AugmentConfig(jitter=jitter, hue=0.0, saturation=1.0, exposure=1.0, augmentation=PJREDDIE)
    target = {"boxes": boxes, "labels": torch.arange(len(boxes)), "image_id": 1}
    return pjreddie_item(image, target, (size, size), ScriptedRandom(us), cfg)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return tmp_path_factory.mktemp("pjreddie")


def _relative(boxes: torch.Tensor, height: int, width: int) -> np.ndarray:
    return (boxes / torch.tensor([width, height, width, height], dtype=torch.float32)).numpy()


@pytest.mark.parametrize("case", range(40))
def test_placement_and_boxes_match_pjreddies_load_data_detection(case):
    """Random sizes and draws, the scale's whole range: shrunk onto grey, and grown past the
    canvas (negative offsets, cut), flipped or not."""
    gen = np.random.default_rng(case)
    oh, ow = int(gen.integers(20, 90)), int(gen.integers(20, 90))
    image = torch.from_numpy(gen.random((3, oh, ow), dtype=np.float32))
    corners = gen.random((5, 2, 2)) * [ow, oh]
    boxes = torch.tensor(np.concatenate([corners.min(1), corners.max(1)], 1), dtype=torch.float32)
    us = [float(v) for v in gen.random(6)]
    us[5] = 0.25 if case % 2 else 0.75   # flip on odd cases
    size = int(gen.choice([32, 48, 64]))
    canvas, target = _product(image, boxes, size, 0.3, us)
    want_image, want_truths = darknet_sample(image.numpy(), _relative(boxes, oh, ow), size, size, 0.3, us)
    assert np.array_equal(canvas.numpy(), want_image)
    got = (target["boxes"] / size).numpy()
    assert got.shape == want_truths.shape
    np.testing.assert_array_equal(target["boxes"].numpy(), want_truths * F32(size))
    assert len(target["labels"]) == len(want_truths)


def test_yolov3_trains_with_pjreddies_augmentation_and_yolov4_with_alexeyabs(results):
    """The yolov3 job's training set (from models/zoo_models/conf/model/yolov3.yaml) makes pjreddie's samples;
    yolov4's stays AlexeyAB's crop-and-stretch."""
    task, _ = make_task("yolov3", results)
    task.prepare_data()
    train = task.build_dataset("train", train=True)
    assert train.cfg.augmentation == PJREDDIE
    train.cfg = replace(train.cfg, hue=0.0, saturation=1.0, exposure=1.0)   # geometry only
    for index, us in enumerate([[0.1, 0.9, 0.2, 0.5, 0.3, 0.9], [0.8, 0.3, 0.95, 0.4, 0.6, 0.1]]):
        image, base_target = train.base[index]
        _, oh, ow = image.shape
        train.rng = ScriptedRandom(us)
        canvas, target = train[index]
        want_image, want_truths = darknet_sample(image.numpy(), _relative(base_target["boxes"], oh, ow),
                                                 train.size, train.size, train.cfg.jitter, us)
        assert np.array_equal(canvas.numpy(), want_image)
        np.testing.assert_array_equal(target["boxes"].numpy(), want_truths * F32(train.size))
    v4, _ = make_task("yolov4", results)
    assert v4.pipeline.augment_config().augmentation == "alexeyab"
