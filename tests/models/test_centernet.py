"""CenterNet (models/zoo_models/centernet/): build, targets, loss, decoding.

Fast tests run the real config shrunk (tests/conftest.py TINY); the smoke-tier learning run and
``replicate check`` are marked slow.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torchvision.ops import box_iou, deform_conv2d

from replicate.config.compose import compose_config
from replicate.resolved import make_spec
from replicate.runner.worker import build_task
from zoo_models.centernet import targets as ct
from zoo_models.centernet.detector import DCN, down_ratio, sampled_deform_conv3x3

TINY = [
    "datasets.shapes.num_train=16", "datasets.shapes.num_val=8", "datasets.shapes.image_size=64",
    "model.tiers.smoke.recipe.steps=4", "model.tiers.smoke.recipe.checkpoint_every=2",
    "model.tiers.smoke.recipe.log_every=1", "model.tiers.smoke.input_size=64",
]


def make_task(tmp_path: Path, extra: list[str] = ()):
    cfg = compose_config(["model=centernet", "tier.compare_with=none", f"results_dir={tmp_path}", *TINY, *extra])
    return build_task(make_spec(cfg, None), cfg), cfg


def perfect_outputs(enc: dict, num_classes: int, size: int) -> dict:
    """Head outputs that reproduce the encoded targets exactly (logits of the heatmap)."""
    batch = enc["hm"].shape[0]
    hm = enc["hm"].clamp(ct.SIGMOID_CLAMP, 1 - ct.SIGMOID_CLAMP)
    out = {"hm": torch.log(hm / (1 - hm))}
    for key in ("wh", "reg"):
        flat = torch.zeros(batch, 2, size * size)
        for b in range(batch):
            real = enc["mask"][b] > 0
            flat[b][:, enc["ind"][b][real]] = enc[key][b][real].T
        out[key] = flat.view(batch, 2, size, size)
    return out


def test_full_variant_has_the_configured_parameter_count_and_heads(tmp_path):
    task, cfg = make_task(tmp_path)
    model = task.build_model("full")
    assert task.trainable_parameters(model) == cfg.model.variants.full.trainable_params == 14_437_349
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"hm": (1, 80, 16, 16), "wh": (1, 2, 16, 16),
                                                             "reg": (1, 2, 16, 16)}
    assert down_ratio(cfg.model.variants.full.arch) == 4
    # Reference init: the heatmap starts at p = sigmoid(-2.19) ~ 0.1 everywhere.
    assert torch.allclose(out["hm"].sigmoid().mean(), torch.tensor(0.1), atol=0.02)


def test_small_variant_heads_and_detections_have_the_expected_shapes(tmp_path):
    task, _ = make_task(tmp_path)
    model = task.build_model("small").eval()
    task.prepare_data()
    dataset = task.build_dataset("val", train=False)
    batch = task.collate([dataset[i] for i in range(2)])
    with torch.no_grad():
        shapes = task.output_shapes(model, batch)
    assert shapes == {"hm": (2, 3, 16, 16), "wh": (2, 2, 16, 16), "reg": (2, 2, 16, 16),
                      "boxes": (100, 4), "scores": (100,), "labels": (100,)}


def test_cpu_deformable_conv_equals_torchvision_kernel():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 7, 6, dtype=torch.float64, generator=gen)
    offset = torch.randn(2, 18, 7, 6, dtype=torch.float64, generator=gen) * 3  # some taps land outside
    mask = torch.rand(2, 9, 7, 6, dtype=torch.float64, generator=gen)
    weight = torch.randn(4, 5, 3, 3, dtype=torch.float64, generator=gen)
    bias = torch.randn(4, dtype=torch.float64, generator=gen)
    args = [t.requires_grad_() for t in (x, offset, mask, weight, bias)]
    ref = deform_conv2d(x, offset, weight, bias, padding=1, mask=mask)
    ours = sampled_deform_conv3x3(x, offset, mask, weight, bias)
    torch.testing.assert_close(ours, ref)
    for a, b in zip(torch.autograd.grad(ref.square().sum(), args), torch.autograd.grad(ours.square().sum(), args)):
        torch.testing.assert_close(a, b)


def test_dcn_starts_as_a_plain_conv_with_half_mask():
    dcn = DCN(4, 3)
    x = torch.randn(1, 4, 5, 5)
    plain = torch.nn.functional.conv2d(x, dcn.weight, dcn.bias, padding=1)
    torch.testing.assert_close(dcn(x), 0.5 * plain)


def test_gaussian_is_peaked_at_the_centre_and_max_blended():
    heat = torch.zeros(10, 12)
    ct.draw_gaussian(heat, 3, 4, radius=2)
    ct.draw_gaussian(heat, 4, 4, radius=1)
    assert heat[4, 3] == 1 and heat[4, 4] == 1
    assert heat[4, 1] > 0 and heat[4, 0] == 0     # radius 2 reaches 2 cells, not 3
    assert (heat <= 1).all()
    # The reference's form: r3 = (b3 + sqrt(b3^2 - 4 a3 c3)) / 2 decides; 10x10 -> (-28 + sqrt(1120)) / 2.
    assert ct.gaussian_radius(10, 10) == pytest.approx((-28 + math.sqrt(1120)) / 2)
    assert ct.gaussian_radius(20, 40) > ct.gaussian_radius(10, 20) > 0


def test_focal_loss_prefers_the_right_heatmap():
    gt = torch.zeros(1, 2, 8, 8)
    ct.draw_gaussian(gt[0, 0], 3, 3, radius=2)
    right = gt.clamp(ct.SIGMOID_CLAMP, 1 - ct.SIGMOID_CLAMP)
    wrong = right.flip(1)       # the peak in the other class
    flat = torch.full_like(gt, 0.1)
    losses = [ct.focal_loss(p, gt).item() for p in (right, flat, wrong)]
    assert losses[0] < losses[1] < losses[2]
    assert losses[0] < 0.1 * losses[1]
    assert ct.focal_loss(flat, torch.zeros_like(gt)).item() > 0  # no objects: negatives only


def test_encode_then_decode_recovers_boxes_through_letterbox(tmp_path):
    task, _ = make_task(tmp_path, ["model.tiers.smoke.input_size=128"])
    # A non-square image: letterboxed to 128 (scale 0.8, 24 px padding), boxes mapped back.
    boxes = torch.tensor([[10.0, 12.0, 50.0, 40.0], [60.0, 30.5, 101.0, 90.0], [120.0, 5.0, 150.0, 33.0]])
    labels = torch.tensor([1, 3, 1])
    item = (torch.zeros(3, 100, 160), {"boxes": boxes, "labels": labels, "image_id": 7})
    batch = task.collate([item])
    out = perfect_outputs(batch[2], 3, 32)
    pred = task.detections(out, batch)[0]
    confident = pred["scores"] > 0.5
    assert int(confident.sum()) == 3 and pred["image_id"] == 7
    iou = box_iou(boxes, pred["boxes"][confident])
    best = iou.argmax(1)
    torch.testing.assert_close(pred["boxes"][confident][best], boxes, atol=1e-3, rtol=0)
    assert pred["labels"][confident][best].tolist() == labels.tolist()


def test_a_few_training_steps_give_finite_falling_losses(tmp_path):
    task, cfg = make_task(tmp_path)
    torch.manual_seed(0)
    task.prepare_data()
    dataset = task.build_dataset("train", train=True)
    model = task.build_model("small").train()
    batch = task.collate([dataset[i] for i in range(4)])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        out = task.training_step(model, batch)
        out["loss"].backward()
        optimizer.step()
        losses.append({k: float(v.detach()) for k, v in out.items()})
    assert all(math.isfinite(v) for step in losses for v in step.values())
    assert set(losses[0]) == {"loss", "hm_loss", "wh_loss", "off_loss"}
    assert losses[-1]["loss"] < losses[0]["loss"]


def test_draw_sample_shows_boxes_and_heatmap(tmp_path):
    task, _ = make_task(tmp_path)
    task.prepare_data()
    image = task.draw_sample(task.build_dataset("train", train=False)[0])
    assert image.dtype == torch.uint8 and image.shape == (3, 64, 64)


@pytest.mark.slow
def test_replicate_check_passes(tmp_path):
    from replicate.check import run_check

    report = run_check(["model=centernet", "tier.compare_with=none", f"results_dir={tmp_path}"], echo=print,
                       visual=True)
    assert report.ok, report.checks


@pytest.mark.slow
def test_smoke_run_learns_and_shuffled_labels_do_not(tmp_path):
    """Acceptance: trained AP >= 3x untrained and PASS against the reference; shuffled not PASS."""
    from replicate.harness import run_one

    base = ["model=centernet", "scheduler=inline", f"results_dir={tmp_path}", "seed=0"]
    untrained = run_one(base + ["tier.compare_with=none", "model.tiers.smoke.recipe.steps=1"], echo=print).jobs[0]
    trained = run_one(base, echo=print).jobs[0]
    shuffled = run_one(base + ["shuffle_labels=true"], echo=print).jobs[0]
    assert trained["metric_value"] >= max(3 * untrained["metric_value"], 10.0)
    assert trained["verdict"] == "PASS"
    assert shuffled["verdict"] != "PASS"
