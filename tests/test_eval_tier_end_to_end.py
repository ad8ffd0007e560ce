"""Each detector's eval tier end to end on CPU (torchvision's three, CenterNet, YOLOv3/v4), on a
dataset laid out as COCO val2017 (tests/coco_layout.py): the released file found under
$ZOO_DATA_ROOT and hash-checked, loaded exactly, the real val split evaluated by the COCO
evaluator with its category gaps and crowd regions, and the verdict judged against the published
claims (box and mask AP)."""

from __future__ import annotations

import hashlib

import pytest
import torch

from tests.coco_layout import write_coco_layout

CASES = {   # model: (torchvision builder, released file, claimed box AP, metrics evaluated)
    "mask_rcnn": ("maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth", 37.9, ("bbox_AP", "segm_AP")),
    "faster_rcnn": ("fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth", 37.0, ("bbox_AP",)),
    "retinanet": ("retinanet_resnet50_fpn", "retinanet_resnet50_fpn_coco-eeacb38b.pth", 36.4, ("bbox_AP",)),
}


# faster_rcnn by default; mask_rcnn and retinanet (25 s together) in the slow run
@pytest.mark.parametrize("model", [m if m == "faster_rcnn" else pytest.param(m, marks=pytest.mark.slow)
                                   for m in sorted(CASES)])
def test_a_torchvision_eval_tier_runs_end_to_end_on_a_coco_layout(model, tmp_path, monkeypatch):
    import torchvision.models.detection as detection

    from replicate.harness import run_one

    builder, file, claim, metrics = CASES[model]
    monkeypatch.setenv("ZOO_DATA_ROOT", str(tmp_path / "data"))
    write_coco_layout(tmp_path / "data" / "coco2017")
    torch.manual_seed(0)   # untrained weights in the released file's format: nothing here can PASS
    released = tmp_path / "data" / "checkpoints" / file
    released.parent.mkdir(parents=True)
    torch.save(getattr(detection, builder)(weights=None, weights_backbone=None).state_dict(), released)
    digest = hashlib.sha256(released.read_bytes()).hexdigest()
    result = run_one([f"model={model}", "tier=eval", "hardware=cpu", "scheduler=inline", "logger=none",
                      f"results_dir={tmp_path / 'results'}", "model.tiers.eval.input_size=320",
                      f"model.tiers.eval.released.sha256_prefix={digest[:8]}"], echo=lambda _: None)
    (row,) = result.jobs
    assert row["verdict"] == "BELOW", (row["verdict"], row["failure_message"])
    assert row["failure_stage"] == "evaluation"     # nothing was trained: the evaluation missed
    assert row["environment"]["weights"]["sha256"] == digest and row["steps_done"] == 0
    for metric in (*metrics, "bbox_AP50"):
        assert 0.0 <= row["metrics"][metric] <= 100.0, row["metrics"]
    assert row["compared_with"]["value"] == claim
    assert [c["metric"] for c in row["compared_with"]["also"]] == (["segm_AP"] if "segm_AP" in metrics else [])


def test_a_tampered_released_file_is_refused_before_it_is_scored(tmp_path, monkeypatch):
    from replicate.harness import run_one

    monkeypatch.setenv("ZOO_DATA_ROOT", str(tmp_path / "data"))
    write_coco_layout(tmp_path / "data" / "coco2017")
    released = tmp_path / "data" / "checkpoints" / "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"
    released.parent.mkdir(parents=True)
    released.write_bytes(b"not torchvision's file")
    result = run_one(["model=faster_rcnn", "tier=eval", "hardware=cpu", "scheduler=inline", "logger=none",
                      f"results_dir={tmp_path / 'results'}"], echo=lambda _: None)
    (row,) = result.jobs
    assert row["verdict"] in ("ERROR", "INFRA") and "does not start with 258fb6c6" in row["failure_message"]
    assert not row["metrics"]


def test_centernets_eval_tier_runs_end_to_end_on_a_coco_layout(tmp_path, monkeypatch):
    """The released ctdet_coco_resdcn18.pth's format (random weights) at --keep_res on the COCO
    layout: found, hashed and recorded (no hash was published), loaded exactly, every image
    scored at its own size, judged against MODEL_ZOO's 28.1 as an evaluation."""
    from replicate.harness import run_one
    from tests.centernet_reference import released_file_state

    monkeypatch.setenv("ZOO_DATA_ROOT", str(tmp_path / "data"))
    write_coco_layout(tmp_path / "data" / "coco2017")
    released = tmp_path / "data" / "checkpoints" / "ctdet_coco_resdcn18.pth"
    released.parent.mkdir(parents=True)
    torch.save(released_file_state(module_prefix=True), released)
    result = run_one(["model=centernet", "tier=eval", "hardware=cpu", "scheduler=inline", "logger=none",
                      f"results_dir={tmp_path / 'results'}"], echo=lambda _: None)
    (row,) = result.jobs
    assert row["verdict"] == "BELOW" and row["failure_stage"] == "evaluation", (row["verdict"], row["failure_message"])
    assert row["environment"]["weights"]["sha256"] == hashlib.sha256(released.read_bytes()).hexdigest()
    assert row["environment"]["weights"]["published_prefix"] is None
    assert 0.0 <= row["metrics"]["bbox_AP"] <= 100.0 and row["steps_done"] == 0
    assert row["compared_with"]["value"] == 28.1
    assert "Pillow" in row["compared_with"]["deviations"][0]   # shown beside the verdict


@pytest.mark.parametrize("model,file", [("yolov3", "yolov3.weights"), ("yolov4", "yolov4.weights")])
def test_a_yolo_eval_tier_runs_end_to_end_on_a_coco_layout(model, file, tmp_path, monkeypatch):
    """A Darknet ``.weights`` file of the full cfg (80 classes; random weights) at the val2017
    claims' resolution on the COCO layout: found, hashed and recorded, loaded, evaluated by the
    claims' protocol (Open Model Zoo's accuracy checker), judged against the published val2017
    measurement as an evaluation."""
    from replicate.config.compose import compose_config
    from replicate.harness import run_one
    from replicate.resolved import make_spec
    from replicate.runner.worker import build_task
    from zoo_models.darknet.weights import save_darknet_weights

    monkeypatch.setenv("ZOO_DATA_ROOT", str(tmp_path / "data"))
    write_coco_layout(tmp_path / "data" / "coco2017", val_images=2)
    overrides = [f"model={model}", "tier=eval", "hardware=cpu", "scheduler=inline", "logger=none",
                 f"results_dir={tmp_path / 'results'}"]
    cfg = compose_config(overrides)
    torch.manual_seed(0)
    net = build_task(make_spec(cfg, None), cfg).build_model("full")
    if model == "yolov4":
        # About a trained file's count of candidates above the checker's objectness 0.001: the 19 x 19
        # layer's 1083, not all 22743 of an untrained one (its exact DIoU-NMS alone would take a CPU
        # minute per image here); the other layers' objectness starts at 1e-4.
        with torch.no_grad():
            for head in net.heads:
                bias = net.net.layers[head.index - 1].conv.bias.view(len(head.mask), head.classes + 5)
                bias[:, 4] = float(torch.logit(torch.tensor(0.01 if head is net.heads[-1] else 1e-4)))
    released = tmp_path / "data" / "checkpoints" / file
    released.parent.mkdir(parents=True)
    save_darknet_weights(net.net, released)
    result = run_one(overrides, echo=lambda _: None)
    (row,) = result.jobs
    assert row["verdict"] == "BELOW" and row["failure_stage"] == "evaluation", (row["verdict"], row["failure_message"])
    assert row["environment"]["weights"]["sha256"] == hashlib.sha256(released.read_bytes()).hexdigest()
    claim = cfg.model.claims[-1] if model == "yolov3" else cfg.model.claims[2]
    assert row["compared_with"]["value"] == claim.value and claim.split == "val2017"
