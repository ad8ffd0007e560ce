"""CenterNet's eval path against xingyizhou/CenterNet's own procedure (tests/centernet_reference.py)
on the same inputs: the ``--keep_res`` input (BGR, padded, normalised), the decoding and mapping
back to the image with the results file's rounding, the released checkpoint's layout, and the
ImageNet trunk the full tier starts from."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from replicate.config.compose import compose_config
from replicate.errors import ConfigError, DataError
from replicate.resolved import make_spec
from replicate.runner.checkpoint import load_state_file
from replicate.runner.worker import build_task
from tests import centernet_reference as ref
from tests.coco_layout import COCO_IDS

cv2 = pytest.importorskip("cv2")


def make_task(tmp_path: Path, tier: str, extra: list[str] = ()):
    cfg = compose_config(["model=centernet", f"tier={tier}", "tier.compare_with=none", f"results_dir={tmp_path}",
                          *extra])
    task = build_task(make_spec(cfg, None), cfg)
    task._category_ids = list(COCO_IDS)   # what build_dataset reads from a COCO annotation file
    return task


def item(rgb: np.ndarray, image_id: int = 1):
    image = torch.from_numpy(rgb).permute(2, 0, 1).float().div(255.0)
    return image, {"image_id": image_id, "boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}


@pytest.mark.parametrize("height,width", [(480, 640), (45, 70), (32, 33), (427, 640)])
def test_keep_res_input_equals_the_references(tmp_path, height, width):
    rgb = np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    task = make_task(tmp_path, "eval")
    images, _, enc = task.eval_collate([item(rgb)])
    expected, meta = ref.pre_process_keep_res(rgb[:, :, ::-1].copy())   # the reference reads BGR
    assert tuple(images.shape[1:]) == expected.shape
    torch.testing.assert_close(images[0], torch.from_numpy(expected), atol=1e-6, rtol=0)
    assert images.shape[-1] % 32 == 0 and images.shape[-1] > width   # (w | 31) + 1: strictly above
    assert enc["geometry"][0, 0] == 1.0
    assert set(enc) == {"geometry"}   # evaluation encodes no training targets (an 80-class heatmap each)


def test_the_smoke_variant_keeps_its_unnormalised_rgb_input(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    cfg = compose_config(["model=centernet", "tier.compare_with=none", f"results_dir={tmp_path}",
                          "model.tiers.smoke.input_size=64"])
    task = build_task(make_spec(cfg, None), cfg)
    images, _, _ = task.collate([item(rgb)])
    torch.testing.assert_close(images[0], item(rgb)[0])


@pytest.mark.parametrize("height,width", [(480, 640), (45, 70)])
def test_detections_equal_the_references_results_file(tmp_path, height, width):
    rgb = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
    task = make_task(tmp_path, "eval")
    batch = task.eval_collate([item(rgb, image_id=139)])
    out_h, out_w = batch[0].shape[-2] // 4, batch[0].shape[-1] // 4
    generator = torch.Generator().manual_seed(height)
    heads = {"hm": torch.randn(1, 80, out_h, out_w, generator=generator) * 2 - 3,
             "wh": torch.rand(1, 2, out_h, out_w, generator=generator) * 20,
             "reg": torch.rand(1, 2, out_h, out_w, generator=generator)}
    (ours,) = task.detections(heads, batch)
    _, meta = ref.pre_process_keep_res(rgb[:, :, ::-1].copy())
    expected = ref.decode_and_post_process(heads["hm"], heads["wh"], heads["reg"], meta, COCO_IDS)
    assert len(ours["scores"]) == len(expected) == 100    # K 100, no threshold
    boxes = ours["boxes"].tolist()
    got = sorted((int(c), [round(b[0], 2), round(b[1], 2), round(b[2] - b[0], 2), round(b[3] - b[1], 2)], float(s))
                 for c, b, s in zip(ours["labels"], boxes, ours["scores"]))
    want = sorted((e["category_id"], e["bbox"], e["score"]) for e in expected)
    assert got == want


def test_the_released_checkpoint_format_loads_exactly(tmp_path):
    task = make_task(tmp_path, "eval")
    model = task.build_model("full")
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == ref.released_layout()
    for prefix, tracked in ((True, True), (False, False)):   # DataParallel prefix; pre-0.4.1 BN buffers
        path = tmp_path / f"ctdet_{prefix}_{tracked}.pth"
        torch.save(ref.released_file_state(module_prefix=prefix, batches_tracked=tracked), path)
        load_state_file(model, path)
        written = ref.released_file_state(module_prefix=False, batches_tracked=tracked)["state_dict"]
        torch.testing.assert_close(model.state_dict()["deconv_layers.0.conv_offset_mask.weight"],
                                   written["deconv_layers.0.conv_offset_mask.weight"])
        torch.testing.assert_close(model.state_dict()["hm.2.bias"], written["hm.2.bias"])


def test_a_checkpoint_of_another_layout_is_a_data_error_naming_it(tmp_path):
    task = make_task(tmp_path, "eval")
    model = task.build_model("full")
    state = ref.released_file_state()
    del state["state_dict"]["wh.2.bias"]
    path = tmp_path / "ctdet_coco_resdcn18.pth"
    torch.save(state, path)
    with pytest.raises(DataError, match="ctdet_coco_resdcn18.pth.*wh.2.bias"):
        load_state_file(model, path)


def test_the_full_tier_starts_from_the_imagenet_trunk_checked_against_its_hash(tmp_path, monkeypatch):
    from torchvision.models import resnet18

    monkeypatch.setenv("ZOO_DATA_ROOT", str(tmp_path / "data"))
    trunk = resnet18(weights=None)
    path = tmp_path / "data" / "checkpoints" / "resnet18-5c106cde.pth"
    path.parent.mkdir(parents=True)
    torch.save(trunk.state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    task = make_task(tmp_path, "full", [f"model.tiers.full.backbone_weights.sha256_prefix={digest[:8]}"])
    model = task.build_model("full")
    torch.testing.assert_close(model.layer3[1].conv2.weight, trunk.layer3[1].conv2.weight)
    torch.testing.assert_close(model.layer2[0].downsample[1].running_var, trunk.layer2[0].downsample[1].running_var)
    with pytest.raises(DataError, match="does not start with 5c106cde"):   # the published hash
        make_task(tmp_path, "full").build_model("full")
    path.write_bytes(b"not a state dict")
    with pytest.raises(DataError, match="resnet18-5c106cde.pth"):
        make_task(tmp_path, "full", ["model.tiers.full.backbone_weights.sha256_prefix=null"]).build_model("full")


def test_keep_resolution_needs_one_image_per_batch(tmp_path):
    with pytest.raises(ConfigError, match="model.tiers.eval.eval_batch_size"):
        compose_config(["model=centernet", "tier=eval", f"results_dir={tmp_path}",
                        "model.tiers.eval.eval_batch_size=2"])


def smooth_image(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth RGB uint8 image: OpenCV interpolates at 1/32 px, so only smooth content lets its
    warp and an exact bilinear one agree closely."""
    coarse = np.random.default_rng(seed).integers(0, 256, (4, 6, 3)).astype(np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("scale,cx,cy,flip", [(0.6 * 640, 200.0, 150.0, False), (1.3 * 640, 400.0, 300.0, True),
                                              (0.9 * 640, 128.0, 352.0, True)])
def test_training_warp_and_boxes_equal_the_references(scale, cx, cy, flip):
    from zoo_models.centernet.augment import RandomScaleCropColour

    rgb = smooth_image(480, 640, int(scale))
    boxes = np.array([[10.0, 20.0, 300.0, 200.0], [400.0, 100.0, 630.0, 470.0]], dtype=np.float32)
    augment = RandomScaleCropColour(512, seed=0)
    tensor = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    image, target = augment.apply(tensor, {"boxes": torch.from_numpy(boxes)}, scale, cx, cy, flip)
    expected, mapped = ref.train_sample_geometry(rgb[:, :, ::-1].copy(), boxes, scale, cx, cy, flip)
    ours = image.permute(1, 2, 0).numpy()[:, :, ::-1]
    assert np.abs(ours - expected).max() < 2e-3      # OpenCV's 1/32 px fixed-point positions
    np.testing.assert_allclose(target["boxes"].numpy(), mapped, atol=1e-3)


def test_colour_noise_equals_the_references_color_aug():
    from zoo_models.centernet.augment import colour_noise

    rgb = np.random.default_rng(3).random((16, 24, 3), dtype=np.float32)
    lighting = np.array([0.05, -0.12, 0.2], dtype=np.float32)
    for order, alphas in (([0, 1, 2], [1.2, 0.7, 1.35]), ([2, 0, 1], [0.65, 1.1, 0.9])):
        ours = colour_noise(torch.from_numpy(rgb).permute(2, 0, 1), order, alphas, torch.from_numpy(lighting))
        expected = ref.colour_aug(rgb[:, :, ::-1].copy(), order, alphas, lighting)
        np.testing.assert_allclose(ours.permute(1, 2, 0).numpy()[:, :, ::-1], expected, atol=1e-5)


def test_the_full_tier_draws_the_references_augmentation_from_the_checkpointed_stream(tmp_path, monkeypatch):
    from tests.coco_layout import write_coco_layout
    from zoo_models.centernet.augment import SCALES, RandomScaleCropColour, border

    assert SCALES == (0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3)                 # np.arange(0.6, 1.4, 0.1)
    assert (border(128, 640), border(128, 200), border(128, 100)) == (128, 64, 32)
    monkeypatch.setenv("ZOO_DATA_ROOT", str(tmp_path / "data"))
    write_coco_layout(tmp_path / "data" / "coco2017")
    train = make_task(tmp_path, "full").build_dataset("train", train=True)
    assert isinstance(train.transforms, RandomScaleCropColour) and train.transforms.colour
    assert train.augmentation_random is train.transforms.random              # saved with the checkpoint
    assert train[0][0].shape == (3, 512, 512)
    augment = RandomScaleCropColour(64, seed=5)
    image = torch.rand(3, 48, 80)
    target = {"boxes": torch.tensor([[8.0, 8.0, 40.0, 30.0]])}
    state = augment.random.state()
    first = augment(image, target)
    augment.random.load_state(state)                                      # a resumed job
    again = augment(image, target)
    assert torch.equal(first[0], again[0]) and first[0].shape == (3, 64, 64)
    assert not torch.equal(augment(image, target)[0], first[0])          # the next draw differs
