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


@pytest.mark.parametrize("model", sorted(BUILDERS))
def test_a_released_torchvision_checkpoint_loads_exactly(model, tmp_path):
    """The released .pth is the state dict of torchvision's builder: every key and shape of it
    loads into the eval tier's model, none missing, none unexpected (strict), and the two then
    compute the same detections."""
    from replicate.runner.torch_loop import load_state_file

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
