"""The YOLO full tiers decay as darknet does: convolution weights only, darknet's update step.

Restated from pjreddie/darknet src/convolutional_layer.c ``update_convolutional_layer`` (AlexeyAB's
is the same, CPU and GPU) with src/network.c ``update_network`` (``batch`` = batch x subdivisions,
the images whose deltas the updates summed):

    bias_updates, scale_updates, weight_updates accumulate the deltas (minus the gradient of
    each image's loss, summed over the batch); then
    biases  += lr / batch * bias_updates;   bias_updates  *= momentum   (scales likewise)
    weight_updates += -decay * batch * weights
    weights += lr / batch * weight_updates; weight_updates *= momentum

The product's loss is the batch's mean of each image's loss (models/zoo_models/yolo/loss.py), so
``batch`` times its gradient is darknet's summed delta, and the recipe's lr is darknet's
``learning_rate`` as it stands.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from replicate.config.compose import compose_config
from replicate.resolved import make_spec
from replicate.runner.optim import build_optimizer
from replicate.runner.worker import build_task
from replicate.tf_import import tf_available
from zoo_models.darknet.cfg_parser import PACKAGED_CFG_DIR

MOMENTUM, DECAY, LR = 0.9, 0.05, 0.01   # decay x lr large enough to show on a bias in two steps


def conv_layer_indices(cfg_file: Path) -> list[int]:
    """Darknet indices of the [convolutional] sections of a cfg, read from its text: sections
    after [net], counted from 0 (parser.c parse_network_cfg)."""
    sections = []
    for line in cfg_file.read_text().splitlines():
        line = line.split("#")[0].split(";")[0].strip()
        if line.startswith("["):
            sections.append(line.strip("[]").strip())
    assert sections[0] in ("net", "network")
    return [i for i, name in enumerate(sections[1:]) if name in ("convolutional", "conv")]


def _task(model: str, tmp_path: Path, *extra: str, tier: str = "full"):
    """The model's task at ``tier`` (full: no trunk file; smoke: on the shapes set)."""
    cfg = compose_config([f"model={model}", f"tier={tier}", f"results_dir={tmp_path}", "tier.compare_with=none",
                          *(["model.tiers.full.backbone_weights=null"] if tier == "full" else []), *extra])
    return build_task(make_spec(cfg, None), cfg), cfg


@pytest.mark.parametrize("model, cfg_file", [("yolov3", "yolov3.cfg"), ("yolov4", "yolov4.cfg")])
def test_full_recipe_decays_exactly_the_conv_weights(model, cfg_file, tmp_path):
    task, cfg = _task(model, tmp_path)
    recipe = cfg.model.tiers.full.recipe
    net = task.build_model("full")
    optimizer = task.configure_optimizers(net, recipe, float(recipe.lr), build_optimizer)["main"]
    names = {id(p): name for name, p in net.named_parameters()}
    by_decay: dict[float, set[str]] = {}
    for group in optimizer.param_groups:
        by_decay.setdefault(group["weight_decay"], set()).update(names[id(p)] for p in group["params"])
    want = {f"net.layers.{i}.conv.weight" for i in conv_layer_indices(PACKAGED_CFG_DIR / cfg_file)}
    assert set(by_decay) == {0.0, recipe.weight_decay}
    assert by_decay[recipe.weight_decay] == want
    assert by_decay[0.0] == set(names.values()) - want   # biases and batch-norm scales/shifts
    assert any(".bn." in n for n in by_decay[0.0]) and any(n.endswith("conv.bias") for n in by_decay[0.0])


def test_other_models_and_adam_keep_decay_on_every_parameter(tmp_path):
    """torchvision's detection references decay every parameter (train.py without
    --norm-weight-decay); darknet's Adam (adam_update_gpu) decays biases and scales too."""
    task, cfg = _task("retinanet", tmp_path)
    assert task.decayed_parameters(None, cfg.model.tiers.full.recipe) is None
    yolo, cfg = _task("yolov3", tmp_path, tier="smoke")
    adam = OmegaConf.merge(cfg.model.tiers.full.recipe, {"optimizer": "adam"})
    assert yolo.decayed_parameters(yolo.build_model("tiny"), adam) is None


def darknet_update(state: dict, deltas: dict, lr: float, batch: int) -> None:
    """update_convolutional_layer on one layer's arrays (float64), in place."""
    for key, accumulated in (("biases", "bias_updates"), ("scales", "scale_updates")):
        if key in state:
            state[accumulated] = state[accumulated] + deltas[key]
            state[key] = state[key] + lr / batch * state[accumulated]
            state[accumulated] = state[accumulated] * MOMENTUM
    state["weight_updates"] = state["weight_updates"] + deltas["weights"] - DECAY * batch * state["weights"]
    state["weights"] = state["weights"] + lr / batch * state["weight_updates"]
    state["weight_updates"] = state["weight_updates"] * MOMENTUM


def _darknet_state(blocks: list) -> list[dict]:
    """Per conv layer: weights, biases (conv bias, or BN beta: darknet's biases with BN), scales."""
    out = []
    for weight, bias, scale in blocks:
        state = {"weights": weight, "weight_updates": np.zeros_like(weight),
                 "biases": bias, "bias_updates": np.zeros_like(bias)}
        if scale is not None:
            state.update(scales=scale, scale_updates=np.zeros_like(scale))
        out.append(state)
    return out


def _check_two_steps(blocks_of, grads_of, step, batch: int) -> None:
    """Two product steps against darknet's update fed the same deltas (-batch x gradient)."""
    states = _darknet_state(blocks_of())
    for _ in range(2):
        grads = grads_of()
        for state, (gw, gb, gs) in zip(states, grads):
            deltas = {"weights": -batch * gw, "biases": -batch * gb}
            if gs is not None:
                deltas["scales"] = -batch * gs
            darknet_update(state, deltas, LR, batch)
        step()
    for state, (weight, bias, scale) in zip(states, blocks_of()):
        np.testing.assert_allclose(weight, state["weights"], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(bias, state["biases"], rtol=1e-5, atol=1e-7)
        if scale is not None:
            np.testing.assert_allclose(scale, state["scales"], rtol=1e-5, atol=1e-7)


def _recipe(cfg):
    """The full tier's SGD recipe with a larger lr and decay (the tiny variant trains on shapes)."""
    return OmegaConf.merge(cfg.model.tiers.full.recipe, {"lr": LR, "momentum": MOMENTUM, "weight_decay": DECAY})


def test_one_torch_sgd_step_is_darknets_update(tmp_path):
    task, cfg = _task("yolov3", tmp_path, tier="smoke")
    torch.manual_seed(0)
    model = task.build_model("tiny")
    with torch.no_grad():   # biases away from 0, so their decay (or its absence) shows
        for block in (b for _, b in model.net.conv_blocks()):
            for p in (block.conv.bias, block.bn and block.bn.bias):
                if p is not None:
                    p.uniform_(0.5, 1.0)
    optimizer = task.configure_optimizers(model, _recipe(cfg), LR, build_optimizer)["main"]
    batch = 4
    images = torch.rand(batch, 3, 64, 64)
    targets = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 30.0]]), "classes": torch.tensor([0])} for _ in range(batch)]
    blocks = [b for _, b in model.net.conv_blocks()]

    def params(block):
        bias = block.bn.bias if block.bn is not None else block.conv.bias
        return block.conv.weight, bias, block.bn.weight if block.bn is not None else None

    def as_numpy(tensors):
        return tuple(None if t is None else t.detach().double().numpy().copy() for t in tensors)

    def grads_of():
        optimizer.zero_grad()
        task.training_step(model.train(), (images, targets))["loss"].backward()
        return [tuple(None if p is None else p.grad.double().numpy().copy() for p in params(b)) for b in blocks]

    _check_two_steps(lambda: [as_numpy(params(b)) for b in blocks], grads_of, optimizer.step, batch)


@pytest.mark.skipif(not tf_available(), reason="tensorflow is not installed")
def test_one_tensorflow_sgd_step_is_darknets_update(tmp_path):
    from replicate.runner.tf_loop import build_tf_optimizer, decay_mask, torch_style_gradients
    from replicate.tf_import import tensorflow

    tf = tensorflow()
    task, cfg = _task("yolov3", tmp_path, "framework=tensorflow", tier="smoke")
    tf.keras.utils.set_random_seed(0)
    model = task.build_model("tiny")
    recipe = _recipe(cfg)
    variables = model.trainable_variables
    mask = decay_mask(task.decayed_parameters(model, recipe), variables)
    # Keras paths name the block's own layers ("conv/kernel", "bn/gamma"): decayed are the
    # kernels, one per [convolutional] of the cfg, and nothing else
    assert [v.path for v, decayed in zip(variables, mask) if decayed] == \
        ["conv/kernel"] * len(conv_layer_indices(PACKAGED_CFG_DIR / "yolov3-tiny.cfg"))
    assert all(v.path != "conv/kernel" for v, decayed in zip(variables, mask) if not decayed)
    for block in (b for _, b in model.conv_blocks()):
        for v in (block.conv.bias, block.bn and block.bn.beta):
            if v is not None:
                v.assign(tf.random.uniform(v.shape, 0.5, 1.0))
    optimizer = build_tf_optimizer(tf, recipe, LR)
    optimizer.build(variables)
    batch = 4
    images = tf.random.uniform((batch, 64, 64, 3))
    arrays = {"images": images, "boxes": tf.constant([[[8.0, 8.0, 40.0, 30.0]]] * batch),
              "classes": tf.zeros((batch, 1), tf.int32), "valid": tf.ones((batch, 1), tf.bool)}
    model.input_size = 64
    blocks = [b for _, b in model.conv_blocks()]
    last: dict = {}

    def params(block):
        bias = block.bn.beta if block.bn is not None else block.conv.bias
        return block.conv.kernel, bias, block.bn.gamma if block.bn is not None else None

    def grads_of():
        with tf.GradientTape() as tape:
            loss = task.training_step(model, arrays)["loss"]
        last["grads"] = tape.gradient(loss, variables)
        by_id = {id(v): g for v, g in zip(variables, last["grads"])}
        return [tuple(None if v is None else by_id[id(v)].numpy().astype(np.float64) for v in params(b))
                for b in blocks]

    def step():
        grads = torch_style_gradients(tf, recipe, last["grads"], variables, 1, mask)
        optimizer.apply_gradients(zip(grads, variables))

    def state():
        return [tuple(None if v is None else v.numpy().astype(np.float64) for v in params(b)) for b in blocks]

    _check_two_steps(state, grads_of, step, batch)
