"""YOLOv3/YOLOv4 Tasks: builds from the config, loss, decoding + NMS, augmentation, .weights loading.

The learning test (minutes) is tests/test_learning.py, parametrized over the registry.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torchvision.ops import box_iou

from replicate.config.compose import compose_config
from replicate.errors import ConfigError
from replicate.resolved import make_spec
from replicate.runner.worker import build_task
from replicate.zoo.registry import get_task_class
from zoo_models.darknet.augment import AugmentConfig, ResizeForEval, _Random, jitter_item, mosaic, to_original
from zoo_models.darknet.cfg_parser import PACKAGED_CFG_DIR, parse_cfg
from zoo_models.darknet.weights import save_darknet_weights
from zoo_models.yolo.loss import heads_from_graph, layer_loss, postprocess, truths_tensor, yolo_loss

CFG = PACKAGED_CFG_DIR  # the cfgs the product runs (models/zoo_models/darknet/cfg/)
MODELS = ("yolov3", "yolov4")


def make_task(model: str, results_dir: Path, *extra: str):
    cfg = compose_config([f"model={model}", f"results_dir={results_dir}", "tier.compare_with=none",
                          "datasets.shapes.num_train=16", "datasets.shapes.num_val=8", *extra])
    return build_task(make_spec(cfg, None), cfg), cfg


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("yolo")


@pytest.mark.parametrize("model", MODELS)
def test_full_variant_matches_the_configured_parameter_count(model, results):
    task, cfg = make_task(model, results)
    full = task.build_model("full")
    assert task.trainable_parameters(full) == cfg.model.variants.full.trainable_params
    assert [h.classes for h in full.heads] == [80] * 3


def test_a_framework_without_an_implementation_is_refused(results):
    # yolov3's TensorFlow build is tested in tests/models/test_yolo_tf.py; yolov4 is torch-only
    with pytest.raises(ConfigError, match="'tensorflow' is not an implementation of yolov4; allowed: torch"):
        get_task_class("yolov4", "tensorflow")


def test_a_misspelt_arch_key_is_named(results):
    task, _ = make_task("yolov4", results, "+model.variants.tiny.arch.width_multiplier=0.5")
    with pytest.raises(ConfigError) as err:
        task.build_model("tiny")
    assert err.value.key == "model.variants.tiny.arch.width_multiplier"


@pytest.mark.parametrize("model", MODELS)
def test_loss_is_finite_and_decreases(model, tmp_path):
    task, _ = make_task(model, tmp_path, "datasets.shapes.image_size=64", "model.tiers.smoke.input_size=64")
    task.prepare_data()
    torch.manual_seed(0)
    net = task.build_model("tiny")
    data = task.build_dataset("train", train=True)
    batch = task.collate([data[i] for i in range(4)])
    assert batch[0].shape == (4, 3, 64, 64) and all(t["classes"].max() < 3 for t in batch[1])
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        out = task.training_step(net, batch)
        assert {"loss", "box", "obj", "cls"} <= set(out) and math.isfinite(float(out["loss"].detach()))
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(float(out["loss"].detach()))
    assert losses[-1] < 0.5 * losses[0]


def _heads(name: str, size: int = 128):
    graph = parse_cfg(CFG / name, classes=3)
    return graph, heads_from_graph(graph, size, scale_anchors=True)


def _encode(heads, truth, size: int) -> list[torch.Tensor]:
    """Raw maps that predict ``truth`` (cx, cy, w, h, class) exactly at its assigned anchor."""
    outputs = []
    cx, cy, w, h, cls = truth
    for head, cells in zip(heads, (size // 32, size // 16)):
        raw = torch.full((1, len(head.mask), 8, cells, cells), -12.0)
        stride = size / cells
        gx, gy = int(cx / stride), int(cy / stride)
        ious = [min(w, aw) * min(h, ah) / (w * h + aw * ah - min(w, aw) * min(h, ah))
                for aw, ah in head.anchors.tolist()]
        best = max(range(len(ious)), key=ious.__getitem__)
        if best in head.mask:
            a, s = head.mask.index(best), head.scale_x_y
            fx, fy = cx / stride - gx, cy / stride - gy
            raw[0, a, 0, gy, gx] = torch.logit(torch.tensor((fx + (s - 1) / 2) / s))
            raw[0, a, 1, gy, gx] = torch.logit(torch.tensor((fy + (s - 1) / 2) / s))
            raw[0, a, 2, gy, gx] = math.log(w / head.anchors[best, 0])
            raw[0, a, 3, gy, gx] = math.log(h / head.anchors[best, 1])
            raw[0, a, 4, gy, gx] = 12.0
            raw[0, a, 5 + cls, gy, gx] = 12.0
        outputs.append(raw.view(1, -1, cells, cells))
    return outputs


@pytest.mark.parametrize("name", ["yolov3-tiny.cfg", "yolov4-tiny.cfg"])
def test_a_perfect_prediction_has_near_zero_loss_and_decodes_to_the_truth(name):
    _, heads = _heads(name)
    truth = (70.3, 50.6, 30.0, 24.0, 2)
    outputs = _encode(heads, truth, 128)
    target = [{"boxes": torch.tensor([[55.3, 38.6, 85.3, 62.6]]), "classes": torch.tensor([2])}]
    losses = yolo_loss(outputs, target, heads, (128, 128))
    assert float(losses["loss"]) < 0.01, losses
    detections = postprocess(outputs, heads, (128, 128))[0]
    assert detections["labels"][0] == 2 and detections["scores"][0] > 0.99
    assert torch.allclose(detections["boxes"][0], target[0]["boxes"][0], atol=1e-3)
    worse = yolo_loss([o + 0.5 for o in outputs], target, heads, (128, 128))
    assert all(float(worse[k]) > float(losses[k]) for k in ("box", "obj", "cls"))


def test_predictions_overlapping_a_truth_are_ignored_for_objectness():
    _, heads = _heads("yolov3-tiny.cfg")
    head = heads[1]  # stride 16, 8x8 cells
    raw = torch.zeros(1, 3, 8, 8, 8)
    for k, (aw, ah) in enumerate(head.masked_anchors.tolist()):  # every cell predicts a 32x32 box
        raw[0, k, 2], raw[0, k, 3] = math.log(32 / aw), math.log(32 / ah)
    raw = raw.view(1, 24, 8, 8)
    gt = truths_tensor([{"boxes": torch.tensor([[40.0, 40.0, 72.0, 72.0]]), "classes": torch.tensor([0])}], "cpu")
    base = layer_loss(raw.clone(), gt, head, (128, 128), 1)["obj"]
    generous = layer_loss(raw.clone(), gt, replace(head, ignore_thresh=0.0), (128, 128), 1)["obj"]
    strict = layer_loss(raw.clone(), gt, replace(head, ignore_thresh=1.0), (128, 128), 1)["obj"]
    # every overlapping prediction drops out of the objectness sum when the threshold is 0
    assert float(generous) < float(base) < float(strict)


def test_iou_thresh_assigns_extra_anchors():
    _, heads = _heads("yolov4-tiny.cfg")
    head = heads[1]  # mask 1,2,3
    gt = truths_tensor([{"boxes": torch.tensor([[30.0, 30.0, 40.0, 44.0]]), "classes": torch.tensor([1])}], "cpu")
    one = layer_loss(torch.zeros(1, 24, 8, 8), gt, head, (128, 128), 1)["cls"]
    many = layer_loss(torch.zeros(1, 24, 8, 8), gt, replace(head, iou_thresh=0.05), (128, 128), 1)["cls"]
    assert float(many) >= 2 * float(one) > 0


def test_decode_and_nms_keep_boxes_in_the_image():
    _, heads = _heads("yolov4-tiny.cfg", size=96)
    torch.manual_seed(0)
    outputs = [torch.randn(2, 24, 3, 3) * 3, torch.randn(2, 24, 6, 6) * 3]
    for det in postprocess(outputs, heads, (96, 96)):
        assert 0 < len(det["boxes"]) and det["labels"].max() < 3
        assert max((det["labels"] == c).sum() for c in det["labels"].unique()) <= 100   # per class, as COCOeval
        assert det["boxes"].min() >= 0 and det["boxes"].max() <= 96
        assert (det["boxes"][:, 2:] >= det["boxes"][:, :2]).all()
        assert (det["scores"][:-1] >= det["scores"][1:]).all()
        # NMS runs on the boxes as predicted, clipping afterwards (darknet's order): only a
        # clipped box may overlap a kept one of its class above 0.45; the suppression itself is
        # held to darknet's in tests/models/test_darknet_eval_geometry.py
        for c in det["labels"].unique():
            same = det["boxes"][det["labels"] == c]
            overlap = box_iou(same, same).fill_diagonal_(0)
            inside = ((same[:, :2] > 0) & (same[:, 2:] < 96)).all(1)
            assert overlap[inside][:, inside].max() <= 0.45 + 1e-6


def test_eval_resize_maps_predictions_back_to_the_original_image():
    image = torch.rand(3, 60, 90)
    target = {"boxes": torch.tensor([[10.0, 5.0, 40.0, 50.0]]), "labels": torch.tensor([1]), "image_id": 7}
    for letter_box in (False, True):
        resized, t = ResizeForEval(128, letter_box)(image, target)
        assert resized.shape == (3, 128, 128)
        assert torch.allclose(to_original(t["boxes"], t["resize"]), target["boxes"], atol=1e-4)


def _one_square() -> tuple[torch.Tensor, dict]:
    image = torch.zeros(3, 100, 100)
    image[:, 20:50, 60:90] = 1.0
    return image, {"boxes": torch.tensor([[60.0, 20.0, 90.0, 50.0]]), "labels": torch.tensor([2]), "image_id": 1}


def test_augmented_boxes_still_frame_their_objects():
    cfg = AugmentConfig(jitter=0.3, hue=0.1, saturation=1.5, exposure=1.5, flip=True)
    rng = _Random(0)
    flipped = 0
    for _ in range(12):
        image, target = jitter_item(*_one_square(), (64, 64), rng, cfg)
        assert image.shape == (3, 64, 64) and len(target["boxes"]) == 1
        x0, y0, x1, y1 = target["boxes"][0].round().int().tolist()
        inside = image[:, y0 + 1:y1 - 1, x0 + 1:x1 - 1].mean()
        outside = (image.sum() - image[:, y0:y1, x0:x1].sum()) / (image.numel() - 3 * (y1 - y0) * (x1 - x0))
        assert inside > outside + 0.2
        flipped += int(x0 < 32)
    assert 0 < flipped < 12  # both orientations occur


def test_mosaic_places_four_images_with_their_boxes():
    cfg = AugmentConfig(jitter=0.1, mosaic=1.0)
    image, target = mosaic([_one_square() for _ in range(4)], 96, _Random(1), cfg)
    assert image.shape == (3, 96, 96) and target["image_id"] == 1
    assert 1 <= len(target["boxes"]) <= 4 and target["labels"].tolist() == [2] * len(target["boxes"])
    assert target["boxes"].min() >= 0 and target["boxes"].max() <= 96


def test_shuffled_labels_reach_the_dataset(results):
    task, _ = make_task("yolov4", results, "shuffle_labels=true")
    task.prepare_data()
    train = task.build_dataset("train", train=True)
    assert train.base._source != list(range(len(train.base)))
    assert task.build_dataset("val", train=False)._source == list(range(8))


def test_load_checkpoint_reads_darknet_weights(results, tmp_path):
    task, _ = make_task("yolov3", results)
    source, target = task.build_model("tiny"), task.build_model("tiny")
    with torch.no_grad():
        for p in source.parameters():
            p.uniform_(-1, 1)
    path = save_darknet_weights(source.net, tmp_path / "tiny.weights")
    assert task.load_checkpoint(target, path) is True
    assert all(torch.equal(a, b) for a, b in zip(source.parameters(), target.parameters()))
    assert task.load_checkpoint(target, tmp_path / "model.pt") is False


def test_augmentation_strengths_come_from_the_cfg():
    full = parse_cfg(CFG / "yolov4.cfg")
    cfg = AugmentConfig.from_cfg(full.net, full.yolo_layers[-1].options)
    assert (cfg.jitter, cfg.hue, cfg.saturation, cfg.exposure, cfg.flip, cfg.mosaic) == (0.3, 0.1, 1.5, 1.5, True, 1.0)
    tiny = parse_cfg(CFG / "yolov3-tiny.cfg")
    assert AugmentConfig.from_cfg(tiny.net, tiny.yolo_layers[-1].options, {"jitter": 0.1}).mosaic == 0.0


def test_detections_are_capped_per_class_as_cocoeval_keeps_them():
    """COCOeval keeps 100 detections per image *and category*: a cap of 100 per image would drop
    the lower-scored boxes of other classes that still count."""
    from zoo_models.yolo.loss import top_per_class

    labels = torch.tensor([0] * 150 + [1] * 20)[torch.randperm(170, generator=torch.Generator().manual_seed(0))]
    kept = top_per_class(labels, 100)
    assert len(kept) == 120 and (labels[kept] == 1).sum() == 20
    assert torch.equal(kept, kept.sort().values)   # the score order is kept
    first_zeros = (labels == 0).nonzero(as_tuple=True)[0][:100]
    assert set(kept.tolist()) >= set(first_zeros.tolist())
