"""The two builds of yolov3 on a training step (models/zoo_models/yolo/training_differential.py),
as ``replicate check`` runs it: clean builds agree; a loss term, a gradient or a batch-norm
convention that differs between them (none of these in the selftest catalogue) is named."""

from __future__ import annotations

import dataclasses

import pytest

from replicate.config.compose import compose_config
from replicate.resolved import make_spec
from replicate.runner.worker import build_task
from replicate.tf_import import tf_available
from replicate.zoo.registry import get_task_class

if not tf_available():
    pytest.skip("tensorflow is not installed (pip install -e '.[tensorflow]')", allow_module_level=True)

from zoo_models.yolo import tf_task as tf_task_module  # noqa: E402
from zoo_models.yolo.training_differential import training_differential  # noqa: E402


@pytest.fixture
def builds(tmp_path):
    cfg = compose_config(["model=yolov3", f"results_dir={tmp_path}", "tier.compare_with=none",
                          "model.tiers.smoke.input_size=64"])
    torch_task = build_task(make_spec(cfg, None), cfg)
    tf_task = get_task_class("yolov3", "tensorflow")(dataclasses.replace(torch_task.ctx, framework="tensorflow"))
    return torch_task, tf_task


def test_clean_builds_agree_on_the_loss_every_gradient_and_the_rolling_statistics(builds):
    ok, detail = training_differential(*builds, "tiny")
    assert ok, detail
    assert "and the gradients of 13 conv layers agree" in detail


def test_an_objectness_term_weighed_differently_in_one_build_is_named(builds, monkeypatch):
    loss = tf_task_module.yolo_loss

    def heavier_objectness(*args, **kwargs):
        parts = dict(loss(*args, **kwargs))
        parts["obj"] = parts["obj"] * 1.05
        parts["loss"] = parts["box"] + parts["obj"] + parts["cls"]
        return parts

    monkeypatch.setattr(tf_task_module, "yolo_loss", heavier_objectness)
    ok, detail = training_differential(*builds, "tiny")
    assert not ok and detail.startswith("training step: loss ") , detail


def test_a_term_whose_value_matches_but_whose_gradient_is_cut_is_named(builds, monkeypatch):
    """The box term computed on stopped outputs: every loss value equal, its gradient gone."""
    from replicate.tf_import import tensorflow

    loss = tf_task_module.yolo_loss

    def cut_box_gradient(outputs, *args, **kwargs):
        tf = tensorflow()
        parts = dict(loss(outputs, *args, **kwargs))
        stopped = dict(loss([tf.stop_gradient(o) for o in outputs], *args, **kwargs))
        parts["box"] = stopped["box"]
        parts["loss"] = parts["box"] + parts["obj"] + parts["cls"]
        return parts

    monkeypatch.setattr(tf_task_module, "yolo_loss", cut_box_gradient)
    ok, detail = training_differential(*builds, "tiny")
    assert not ok and "gradient differs" in detail and "layer " in detail, detail


def test_a_batch_norm_momentum_of_the_other_convention_is_named(builds, monkeypatch):
    """Keras' momentum weighs the old value, darknet's (and torch's) the new: passing darknet's
    0.01 straight through trains with a rolling mean 99% batch, 1% history."""
    build = tf_task_module.build_tf_darknet
    monkeypatch.setattr(tf_task_module, "build_tf_darknet", lambda graph, momentum: build(graph, 1.0 - momentum))
    ok, detail = training_differential(*builds, "tiny")
    # the calibrated means are the batch's own, so the variance (floored, then updated) tells
    assert not ok and "layer 0 (convolutional" in detail and "rolling variance differs" in detail, detail
