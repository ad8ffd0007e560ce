"""The YOLOv3 TensorFlow task: same loss and detections as the torch task on the same weights.

The learning run through the harness is tests/runner/test_tf_loop.py (slow test).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from replicate.config.compose import compose_config
from replicate.errors import ConfigError
from replicate.resolved import make_spec
from replicate.runner.worker import build_task
from replicate.tf_import import tf_available
from replicate.zoo.registry import frameworks_of, get_task_class
from zoo_models.darknet.cfg_parser import PACKAGED_CFG_DIR, parse_cfg
from zoo_models.yolo.loss import heads_from_graph
from zoo_models.yolo.loss import postprocess as torch_postprocess

CFG = PACKAGED_CFG_DIR  # the cfgs the product runs (models/zoo_models/darknet/cfg/)
if not tf_available():
    pytest.skip("tensorflow is not installed (pip install -e '.[tensorflow]')", allow_module_level=True)

from zoo_models.darknet.tf_weights import save_darknet_weights  # noqa: E402  (none of these imports TF)
from zoo_models.darknet.weights import load_darknet_weights  # noqa: E402
from zoo_models.yolo.loss_tf import postprocess as tf_postprocess  # noqa: E402


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    """(torch task, TF task) of yolov3 at 64 px on a small shapes set, data prepared."""
    root = tmp_path_factory.mktemp("yolo_tf")
    common = ["model=yolov3", f"results_dir={root}", "tier.compare_with=none", "datasets.shapes.num_train=16",
              "datasets.shapes.num_val=8", "datasets.shapes.image_size=64", "model.tiers.smoke.input_size=64"]
    built = []
    for framework in ("torch", "tensorflow"):
        cfg = compose_config([*common, f"framework={framework}"])
        built.append(build_task(make_spec(cfg, None), cfg))
    task, twin = built
    task.prepare_data()
    task.build_dataset("train", train=True)   # category ids for the torch collate
    return task, twin


def _twins(tasks, tmp_path):
    """The torch and TF models of the tiny variant holding the same .weights, and a batch of 4."""
    task, twin = tasks
    tf_model = twin.build_model("tiny")
    path = save_darknet_weights(tf_model, tmp_path / "tiny.weights")
    torch_model = task.build_model("tiny")
    load_darknet_weights(torch_model.net, path)
    data = twin.build_dataset("train", train=True)
    return torch_model.eval(), tf_model, twin.collate([data[i] for i in range(4)])


def test_the_registered_task_builds_the_tensorflow_model(tasks):
    task, twin = tasks
    assert (twin.name, twin.framework) == ("yolov3", "tensorflow")
    assert (task.name, task.framework) == ("yolov3", "torch")
    assert type(twin) is get_task_class("yolov3", "tensorflow") and frameworks_of("yolov3") == ("torch", "tensorflow")
    full = twin.build_model("full")
    assert twin.trainable_parameters(full) == task.ctx.model_cfg.variants.full.trainable_params
    with pytest.raises(ConfigError, match="'jax' is not an implementation of yolov3; allowed: torch, tensorflow"):
        get_task_class("yolov3", "jax")


def test_tf_loss_equals_the_torch_loss_on_the_same_weights_and_batch(tasks, tmp_path, tf):
    task, twin = tasks
    torch_model, tf_model, (arrays, targets) = _twins(tasks, tmp_path)
    assert arrays["images"].shape == (4, 64, 64, 3) and arrays["valid"].any()
    images = torch.from_numpy(arrays["images"]).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        ours = task.training_step(torch_model, (images, targets))
    theirs = twin.training_step(tf_model, {k: tf.constant(v) for k, v in arrays.items()}, training=False)
    for key in ("loss", "box", "obj", "cls"):
        assert float(theirs[key]) == pytest.approx(float(ours[key]), rel=1e-4, abs=1e-4), key


def test_tf_loss_is_finite_and_decreases_on_one_batch(tasks, tf):
    _, twin = tasks
    tf.keras.utils.set_random_seed(0)
    model = twin.build_model("tiny")
    data = twin.build_dataset("train", train=True)
    arrays = {k: tf.constant(v) for k, v in twin.collate([data[i] for i in range(4)])[0].items()}
    optimizer = tf.keras.optimizers.Adam(1e-2)

    @tf.function(autograph=False)
    def step(batch):
        with tf.GradientTape() as tape:
            out = twin.training_step(model, batch)
        optimizer.apply_gradients(zip(tape.gradient(out["loss"], model.trainable_variables), model.trainable_variables))
        return out

    losses = [float(step(arrays)["loss"]) for _ in range(8)]
    assert all(np.isfinite(losses)) and losses[-1] < 0.5 * losses[0]


def test_decoding_and_nms_match_the_torch_postprocess(tf):
    graph = parse_cfg(CFG / "yolov3-tiny.cfg", classes=3)
    heads = heads_from_graph(graph, 64, scale_anchors=True)
    gen = torch.Generator().manual_seed(0)
    maps = [torch.randn(2, 24, 2, 2, generator=gen) * 3, torch.randn(2, 24, 4, 4, generator=gen) * 3]
    ours = torch_postprocess(maps, heads, (64, 64), conf_thresh=0.05)
    theirs = tf_postprocess([tf.constant(m.permute(0, 2, 3, 1).numpy()) for m in maps], heads, (64, 64),
                            conf_thresh=0.05)
    for a, b in zip(ours, theirs):
        assert len(b["scores"]) == len(a["scores"]) > 0
        order_a, order_b = np.argsort(-a["scores"].numpy(), kind="stable"), np.argsort(-b["scores"], kind="stable")
        np.testing.assert_allclose(b["scores"][order_b], a["scores"].numpy()[order_a], rtol=1e-5)
        np.testing.assert_allclose(b["boxes"][order_b], a["boxes"].numpy()[order_a], atol=1e-3)
        assert (b["boxes"] >= 0).all() and (b["boxes"] <= 64).all()


def test_predictions_reach_the_coco_evaluator(tasks):
    _, twin = tasks
    model = twin.build_model("tiny")
    val = twin.build_dataset("val", train=False)
    preds = twin.predict(model, twin.collate([val[i] for i in range(2)]))
    evaluator = twin.build_evaluator("val")
    evaluator.update(preds)
    assert "bbox_AP" in evaluator.compute()
    assert set(preds[0]) == {"image_id", "boxes", "scores", "labels"}


def test_check_runs_the_differential_and_says_when_tensorflow_is_absent(tasks, monkeypatch):
    task, _ = tasks
    ok, detail = task.differential_check()
    assert ok and "agree within" in detail
    monkeypatch.setattr("replicate.tf_import.tf_available", lambda: False)
    ok, detail = task.differential_check()
    assert ok and "skipped, tensorflow is not installed" in detail and "[tensorflow]" in detail


def test_check_of_the_tensorflow_implementation(tmp_path, shapes_root, tiny):
    from replicate.check import run_check

    data = [o for o in tiny if o.startswith("datasets.") or "input_size" in o]
    report = run_check(["model=yolov3", "framework=tensorflow", f"results_dir={tmp_path}",
                        f"datasets.shapes.root={shapes_root}", *data], echo=print)
    assert report.ok, [c for c in report.checks if not c["ok"]]
    names = [c["check"] for c in report.checks]
    assert names == ["config", "params", "splits", "shapes", "gradients", "overfit", "statistics", "evaluation",
                     "differential"]
    assert "tensorflow" in report.checks[names.index("overfit")]["detail"]


def test_check_of_the_tensorflow_implementation_is_seeded(tmp_path, shapes_root, tiny, monkeypatch, tf):
    # Keras draws its initialisers' seeds from Python's random (seeded with torch's), but TF ops
    # (dropout, tf.random in a loss or augmentation) use TF's global seed: run_check must set it,
    # so two checks start from the same weights *and* the same TF random stream
    from replicate.check import run_check

    seen = []

    def fake_preflight(task, model, *args):
        seen.append(([v.numpy().copy() for v in model.trainable_variables], tf.random.uniform([8]).numpy()))
        return [("overfit", True, "not run")]

    monkeypatch.setattr("replicate.runner.tf_loop.tf_preflight", fake_preflight)
    monkeypatch.setattr("zoo_models.yolo.tf_task.YoloTfTask.differential_check", lambda self: None)
    data = [o for o in tiny if o.startswith("datasets.") or "input_size" in o]
    for _ in range(2):
        run_check(["model=yolov3", "framework=tensorflow", f"results_dir={tmp_path}",
                   f"datasets.shapes.root={shapes_root}", *data], echo=lambda line: None)
    (weights_a, draw_a), (weights_b, draw_b) = seen
    assert all(np.array_equal(a, b) for a, b in zip(weights_a, weights_b))
    assert np.array_equal(draw_a, draw_b)
