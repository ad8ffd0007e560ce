"""The YOLO full tiers: the Darknet cfg's own [net] recipe (numbers held to the packaged cfgs),
darknet's burn-in and step policy, and the pretrained trunk file (``darknet partial``) loaded into
the first conv layers only."""

from __future__ import annotations

import pytest
import torch

from replicate.config.compose import compose_config
from replicate.errors import DataError
from replicate.resolved import make_spec
from replicate.runner.optim import lr_factor
from replicate.runner.worker import build_task
from zoo_models.darknet.cfg_parser import parse_cfg
from zoo_models.darknet.weights import _conv_tensors, write_weights_file

CFG_DIR = "models/zoo_models/darknet/cfg"


@pytest.mark.parametrize("model,cfg_file", [("yolov3", "yolov3.cfg"), ("yolov4", "yolov4.cfg")])
def test_the_full_recipe_is_the_cfgs_own(model, cfg_file):
    net = parse_cfg(f"{CFG_DIR}/{cfg_file}").net
    recipe = compose_config([f"model={model}", "tier=full"]).model.tiers.full.recipe
    steps, scales = list(net["steps"]), list(net["scales"])   # the parser reads both as lists
    assert recipe.lr == pytest.approx(float(net["learning_rate"]))
    assert recipe.momentum == pytest.approx(float(net["momentum"]))
    assert recipe.weight_decay == pytest.approx(float(net["decay"]))
    assert recipe.batch_size == int(net["batch"]) and recipe.steps == int(net["max_batches"])
    assert list(recipe.milestones) == steps and all(s == pytest.approx(recipe.gamma) for s in scales)
    assert recipe.warmup_steps == int(net["burn_in"]) and recipe.warmup_power == float(net.get("power", 4))


def test_burn_in_and_steps_follow_darknets_rate():
    """darknet get_current_rate: lr * (batch / burn_in) ** power during burn-in, then x scale at
    each step reached."""
    recipe = compose_config(["model=yolov3", "tier=full"]).model.tiers.full.recipe
    for step, expected in ((0, 0.0), (250, 0.25 ** 4), (500, 0.5 ** 4), (999, (999 / 1000) ** 4), (1000, 1.0),
                           (399_999, 1.0), (400_000, 0.1), (450_000, 0.01), (500_199, 0.01)):
        assert lr_factor(step, 500_200, 1.0, recipe) == pytest.approx(expected)


def _tiny_task(tmp_path, monkeypatch, trunk_name: str):
    monkeypatch.setenv("ZOO_DATA_ROOT", str(tmp_path / "data"))
    cfg = compose_config(["model=yolov3", "tier.compare_with=none", f"results_dir={tmp_path}",
                          f"model.tiers.smoke.backbone_weights={{file: {trunk_name}, source: test}}"])
    return build_task(make_spec(cfg, None), cfg)


def test_a_trunk_file_fills_the_first_conv_layers_only(tmp_path, monkeypatch):
    task = _tiny_task(tmp_path, monkeypatch, "tiny.conv.4")
    path = tmp_path / "data" / "checkpoints" / "tiny.conv.4"
    torch.manual_seed(1)
    cfg = compose_config(["model=yolov3", "tier.compare_with=none", f"results_dir={tmp_path}"])
    donor = [block for _, block in build_task(make_spec(cfg, None), cfg).build_model("tiny").net.conv_blocks()]
    # `darknet partial`: the header, then the first conv layers' values in file order
    write_weights_file(path, (0, 2, 0), 0, (t.detach().numpy() for b in donor[:4] for t in _conv_tensors(b)))
    blocks = [block for _, block in task.build_model("tiny").net.conv_blocks()]
    assert torch.equal(_conv_tensors(blocks[3])[-1], _conv_tensors(donor[3])[-1])        # loaded
    assert not torch.equal(_conv_tensors(blocks[4])[-1], _conv_tensors(donor[4])[-1])    # kept its init
    write_weights_file(path, (0, 2, 0), 0, (t.detach().numpy() for b in donor for t in _conv_tensors(b)))
    with pytest.raises(DataError, match="a trunk file"):                                   # a whole model
        task.build_model("tiny")
    path.unlink()
    with pytest.raises(DataError, match="tiny.conv.4"):
        task.build_model("tiny")
