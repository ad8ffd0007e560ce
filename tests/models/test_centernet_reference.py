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
