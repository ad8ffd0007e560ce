"""The torchvision detectors' eval path preprocesses exactly as torchvision's own builders (the
models behind the published box_map): same resize (shorter side 800, longer at most 1333) and
the same normalisation, on the same image."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection import fasterrcnn_resnet50_fpn, maskrcnn_resnet50_fpn, retinanet_resnet50_fpn

from replicate.config.compose import compose_config
from replicate.resolved import make_spec
from replicate.runner.worker import build_task

BUILDERS = {"faster_rcnn": fasterrcnn_resnet50_fpn, "mask_rcnn": maskrcnn_resnet50_fpn,
            "retinanet": retinanet_resnet50_fpn}


@pytest.mark.parametrize("model", sorted(BUILDERS))
def test_the_eval_tier_resizes_and_normalises_as_torchvision(model, tmp_path):
    cfg = compose_config([f"model={model}", "tier=eval", f"results_dir={tmp_path}"])
    ours = build_task(make_spec(cfg, None), cfg).build_model(cfg.model.tiers.eval.variant).eval()
    theirs = BUILDERS[model](weights=None, weights_backbone=None).eval()
    image = torch.rand(3, 480, 640, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mine, _ = ours.transform([image])
        reference, _ = theirs.transform([image])
    # A 640x480 image runs at 1066x800 (a square 800x800 resize would cost several AP)
    assert mine.image_sizes == reference.image_sizes == [(800, 1066)]
    assert torch.equal(mine.tensors, reference.tensors)


# faster_rcnn by default; the other two (35 s together) in the slow run
@pytest.mark.parametrize("model", [m if m == "faster_rcnn" else pytest.param(m, marks=pytest.mark.slow)
                                   for m in sorted(BUILDERS)])
def test_a_released_torchvision_checkpoint_loads_exactly(model, tmp_path):
    """The released .pth is the state dict of torchvision's builder: every key and shape of it
    loads into the eval tier's model, none missing, none unexpected (strict), and the two then
    compute the same detections."""
    from replicate.runner.checkpoint import load_state_file

    cfg = compose_config([f"model={model}", "tier=eval", f"results_dir={tmp_path}"])
    ours = build_task(make_spec(cfg, None), cfg).build_model("full").eval()
    torch.manual_seed(0)
    theirs = BUILDERS[model](weights=None, weights_backbone=None).eval()
    path = tmp_path / f"{model}.pth"
    torch.save(theirs.state_dict(), path)
    load_state_file(ours, path)
    image = torch.rand(3, 240, 320, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        mine, reference = ours([image])[0], theirs([image])[0]
    assert torch.equal(mine["boxes"], reference["boxes"]) and torch.equal(mine["scores"], reference["scores"])


@pytest.mark.parametrize("model", sorted(BUILDERS))
def test_the_eval_tier_names_torchvisions_released_file_and_claims_its_published_number(model):
    """The file a lab places under $ZOO_DATA_ROOT/checkpoints/, its hash prefix and the claim it is
    judged against are torchvision's own metadata for these weights (read from the installed
    package, never downloaded)."""
    from torchvision.models import get_model_weights

    weights = get_model_weights(BUILDERS[model]).COCO_V1
    cfg = compose_config([f"model={model}", "tier=eval"])
    released = cfg.model.tiers.eval.released
    assert released.file == weights.url.rsplit("/", 1)[1]
    assert released.file.endswith(f"-{released.sha256_prefix}.pth")   # torch.hub's hash-in-name convention
    claim = next(c for c in cfg.model.claims if c.split == "val2017" and c.metric == "bbox_AP")
    assert claim.value == weights.meta["_metrics"]["COCO-val2017"]["box_map"]


def _trunk_file(tmp_path, monkeypatch) -> tuple:
    """An ImageNet-ResNet-50-shaped state dict where the full tier looks for torchvision's file."""
    import hashlib

    from torchvision.models import resnet50

    monkeypatch.setenv("ZOO_DATA_ROOT", str(tmp_path))
    torch.manual_seed(3)
    state = resnet50().state_dict()
    path = tmp_path / "checkpoints" / "resnet50-0676ba61.pth"
    path.parent.mkdir()
    torch.save(state, path)
    return state, hashlib.sha256(path.read_bytes()).hexdigest()[:8]


@pytest.mark.parametrize("model", sorted(BUILDERS))
def test_the_full_tier_starts_from_the_imagenet_trunk_with_the_references_frozen_stages(model, tmp_path,
                                                                                       monkeypatch):
    """As references/detection: weights_backbone ResNet50_Weights.IMAGENET1K_V1 and 3 trainable
    stages (conv1 and layer1 frozen); the file is the one torchvision publishes, by name."""
    from torchvision.models import ResNet50_Weights

    state, prefix = _trunk_file(tmp_path, monkeypatch)
    trunk_cfg = compose_config([f"model={model}"]).model.tiers.full.backbone_weights
    assert ResNet50_Weights.IMAGENET1K_V1.url.endswith("/" + trunk_cfg.file) and trunk_cfg.file.split("-")[1][:8] \
        == trunk_cfg.sha256_prefix
    cfg = compose_config([f"model={model}", "tier=full", f"results_dir={tmp_path}",
                          f"model.tiers.full.backbone_weights.sha256_prefix={prefix}"])   # this test's file
    built = build_task(make_spec(cfg, None), cfg).build_model("full")
    body = built.backbone.body
    assert torch.equal(body.conv1.weight, state["conv1.weight"]) and torch.equal(body.layer4[2].conv3.weight,
                                                                                state["layer4.2.conv3.weight"])
    trains = {name.split(".")[0] for name, p in body.named_parameters() if p.requires_grad}
    assert trains == {"layer2", "layer3", "layer4"}
    deviations = cfg.model.tiers.full.deviations
    assert deviations is not None and not any("random weights" in line for line in deviations)


def test_a_trunk_file_that_is_not_torchvisions_is_refused(tmp_path, monkeypatch):
    from replicate.errors import DataError

    _trunk_file(tmp_path, monkeypatch)   # its hash does not start with torchvision's 0676ba61
    cfg = compose_config(["model=faster_rcnn", "tier=full", f"results_dir={tmp_path}"])
    with pytest.raises(DataError, match="does not start with 0676ba61"):
        build_task(make_spec(cfg, None), cfg).build_model("full")
