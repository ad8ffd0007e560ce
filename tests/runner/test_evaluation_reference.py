"""The evaluation path held to fixed weights (replicate/runner/evaluation_reference.py): every
smoke tier ships calibrated weights that still score their record through the job's evaluation,
the check leaves the job's model and random streams as they were, and an evaluation defect that
the training band would hide (none of them in the selftest catalogue) stops the job before it
trains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf, open_dict

from replicate.config.compose import compose_config
from replicate.errors import ConfigError, DataError, EvaluationPathChanged
from replicate.failures import classify
from replicate.runner import evaluation_reference as reference
from tests.runner.loops import set_up_loop

SHIPPED = reference.weights_dir("yolov4", "torch")   # the zoo ships every model's weights in one folder
SMOKE = [("faster_rcnn", "torch"), ("retinanet", "torch"), ("mask_rcnn", "torch"), ("centernet", "torch"),
         ("yolov3", "torch"), ("yolov4", "torch"), ("pix2pix", "torch"), ("yolov3", "tensorflow")]


def _overrides(model: str, framework: str) -> list[str]:
    return [f"model={model}", f"framework={framework}", "tier=smoke"]


@pytest.mark.parametrize("model,framework", SMOKE, ids=lambda v: v)
def test_every_smoke_tier_ships_its_evaluation_weights(model, framework):
    """Recorded for each smoke implementation, the file in the project with the recorded hash,
    a tolerance per metric far inside the training band."""
    cfg = compose_config(_overrides(model, framework))
    recorded = reference.reference_for(cfg)
    assert recorded is not None, f"{model}/{framework}: no evaluation reference recorded"
    path = reference.weights_path(recorded.weights, model, framework)
    assert path.is_file() and reference.sha256_of(path) == recorded.sha256
    metric = cfg.model.tiers.smoke.reference.metric if framework == cfg.model.frameworks[0] \
        else cfg.model.tiers.smoke.framework_references[framework].metric
    assert metric in recorded.metrics
    spread = (cfg.model.tiers.smoke.framework_references.get(framework) or cfg.model.tiers.smoke.reference).spread
    assert recorded.tolerance[metric] < spread / 10   # evaluation alone: far below the training's noise


@pytest.mark.slow   # the whole smoke dataset is generated, and each model scores 128 images
@pytest.mark.parametrize("model,framework", SMOKE, ids=lambda v: v)
def test_the_shipped_weights_score_their_record_on_the_smoke_data(model, framework, tmp_path_factory):
    """What every smoke job checks before it trains, here on a fresh copy of the smoke data."""
    root = tmp_path_factory.getbasetemp() / "smoke-data" / "shapes"
    loop = _loop_on(_overrides(model, framework), tmp_path_factory.mktemp("results"), root, [])
    loop.check_evaluation_reference()
    record = loop.result.environment["evaluation_reference"]
    assert record["judged"] and record["ok"], record


# ------------------------------------------------ small jobs at the smoke resolution, shipped weights
# The smoke tier's architecture and resolution (the shipped weights fit it), on 24 evaluation images:
# the record is made here, on this data, as calibration makes it on the smoke data.
SMALL = ["datasets.shapes.num_train=16", "datasets.shapes.num_val=24", "model.tiers.smoke.recipe.steps=4",
         "model.tiers.smoke.recipe.checkpoint_every=2", "model.tiers.smoke.recipe.log_every=1", "logger=none"]


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shapes128") / "shapes"


def _loop(model: str, framework: str, results_dir: Path, data_root: Path):
    return _loop_on(_overrides(model, framework), results_dir, data_root, SMALL)


def _loop_on(overrides: list[str], results_dir: Path, data_root: Path, extra: list[str]):
    return set_up_loop([*overrides, "logger=none", *extra], results_dir, data_root)


def _record(loop, images: int = 16) -> dict:
    """The shipped weights scored on this job's data and recorded in its config, as calibration
    records them on the smoke data."""
    from replicate.config.schema import EvaluationReferenceConfig

    shipped = reference.reference_for(loop.cfg)
    path = reference.weights_path(shipped.weights, loop.task.name, loop.task.framework)
    metrics = reference.score_weights(loop, path, shipped.sha256, images)
    assert max(metrics.values()) > 0   # trained weights: something to lose
    block = EvaluationReferenceConfig(weights=shipped.weights, sha256=shipped.sha256, dataset_hash=loop.dataset_hash,
                                      images=images, metrics=metrics,
                                      tolerance={k: reference.tolerance(v, 0.0) for k, v in metrics.items()},
                                      labels=["s0/default/t1"], source="this test")
    with open_dict(loop.cfg):
        loop.cfg.model.tiers.smoke.evaluation_references[loop.task.ctx.framework] = OmegaConf.structured(block)
    return metrics


@pytest.mark.parametrize("model,framework", [("centernet", "torch"), ("yolov3", "tensorflow")], ids=lambda v: v)
def test_the_check_passes_and_leaves_the_model_and_random_streams_as_they_were(
        model, framework, results_dir, small_root):
    loop = _loop(model, framework, results_dir, small_root)
    metrics = _record(loop)
    before, rng = loop.state_snapshot(), torch.get_rng_state()
    loop.check_evaluation_reference()
    record = loop.result.environment["evaluation_reference"]
    assert record["judged"] and record["ok"] and record["measured"] == metrics
    after = loop.state_snapshot()
    assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)
    assert torch.equal(torch.get_rng_state(), rng)


def _changed(loop) -> EvaluationPathChanged:
    with pytest.raises(EvaluationPathChanged) as caught:
        loop.check_evaluation_reference()
    failure = classify(caught.value, "evaluation")
    assert (failure.stage, failure.impact) == ("evaluation", "incorrect functionality")
    return caught.value


def test_a_raised_score_threshold_is_named(results_dir, small_root, monkeypatch):
    """yolov4 keeps only detections scoring over 0.3 'to clean up the visualisations': a
    post-processing setting a training band of +/-30% would not see on its own."""
    loop = _loop("yolov4", "torch", results_dir, small_root)
    _record(loop)
    predict = loop.task.predict

    def thresholded(model, batch):
        kept = []
        for image in predict(model, batch):
            keep = image["scores"] > 0.3 * image["scores"].max() if len(image["scores"]) else image["scores"] > 0
            kept.append({k: (v[keep] if isinstance(v, torch.Tensor) and len(v) == len(keep) else v)
                         for k, v in image.items()})
        return kept

    monkeypatch.setattr(loop.task, "predict", thresholded)
    error = _changed(loop)
    assert "bbox_" in str(error) and "evaluation path" in str(error)


def test_evaluation_images_scaled_twice_are_named(results_dir, small_root, monkeypatch):
    """faster_rcnn's evaluation images divided by 255 once more (a second ToTensor): input
    scaling at evaluation only."""
    loop = _loop("faster_rcnn", "torch", results_dir, small_root)
    _record(loop)
    collate = loop.task.eval_collate

    def darker(items):
        images, *rest = collate(items)
        return (type(images)(image / 255.0 for image in images), *rest)

    monkeypatch.setattr(loop.task, "eval_collate", darker)
    _changed(loop)


def test_a_job_on_other_data_is_not_judged_and_says_why(results_dir, small_root):
    loop = _loop("yolov4", "torch", results_dir, small_root)   # 24 evaluation images: not the calibrated data
    loop.check_evaluation_reference()
    record = loop.result.environment["evaluation_reference"]
    assert not record["judged"] and "not the calibrated data" in record["why"]


def test_weights_of_another_layout_or_hash_are_refused(results_dir, small_root, tmp_path, monkeypatch):
    loop = _loop("yolov4", "torch", results_dir, small_root)
    _record(loop)   # recorded on this data: judged
    shipped = reference.reference_for(loop.cfg)
    monkeypatch.setattr(reference, "weights_dir", lambda model, framework: tmp_path)   # a copy to spoil
    path = tmp_path / shipped.weights
    path.write_bytes((SHIPPED / shipped.weights).read_bytes())
    arrays = reference.read_weights(path, shipped.sha256)
    first = next(iter(arrays))
    with pytest.raises(DataError, match="architecture changed"):
        reference.fitted({k: v for k, v in arrays.items() if k != first}, loop.state_snapshot(), path)
    with pytest.raises(DataError, match="architecture changed"):
        reference.fitted({**arrays, first: np.zeros((1, 2, 3))}, loop.state_snapshot(), path)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(DataError, match="not the calibrated weights"):
        loop.check_evaluation_reference()
    path.unlink()
    with pytest.raises(DataError, match="missing"):
        loop.check_evaluation_reference()
    path.write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="not a readable checkpoint|refused"):
        reference.read_weights(path, reference.sha256_of(path))


def test_float_arrays_are_stored_as_float16_and_integers_kept(tmp_path):
    arrays = {"w": np.linspace(-1, 1, 7, dtype=np.float32), "n": np.array(5, dtype=np.int64),
              "huge": np.array([1e6], dtype=np.float32)}   # over float16's range: kept as float32
    digest = reference.write_weights(arrays, tmp_path / "x.pt", "m", "torch")
    back = reference.read_weights(tmp_path / "x.pt", digest)
    assert back["w"].dtype == np.float16 and np.allclose(back["w"], arrays["w"], atol=1e-3)
    assert back["n"].dtype == np.int64 and back["n"].shape == () and int(back["n"]) == 5
    assert back["huge"].dtype == np.float32 and float(back["huge"][0]) == 1e6


def test_the_comparison_names_the_worst_metric_first():
    comparison = reference.Comparison({"AP": 20.0, "AP50": 40.5}, {"AP": 21.0, "AP50": 40.0, "AR": 30.0},
                                      {"AP": 0.1, "AP50": 0.1, "AR": 0.1})
    breaches = comparison.breaches
    assert breaches[0].startswith("AR not measured") and breaches[1].startswith("AP 20")
    assert len(breaches) == 3 and not comparison.to_dict()["ok"]
    assert not reference.Comparison({"AP": 21.05}, {"AP": 21.0}, {"AP": 0.1}).breaches
    assert reference.Comparison({"AP": float("nan")}, {"AP": 21.0}, {"AP": 0.1}).breaches   # NaN is never within


@pytest.mark.parametrize("key,value,match", [
    ("weights", "../../etc/passwd.pt", "not a path"), ("weights", "x.bin", "not a path"),
    ("sha256", "abc", "64-digit"), ("images", 0, ">= 1"), ("tolerance", {}, "positive tolerance")])
def test_a_bad_record_is_refused_naming_its_key(key, value, match):
    from replicate.config.validate import validate

    cfg = compose_config(_overrides("yolov4", "torch"))
    with open_dict(cfg):
        node = cfg.model.tiers.smoke.evaluation_references.torch
        node[key] = value
    with pytest.raises(ConfigError, match=match) as caught:
        validate(cfg)
    assert f"evaluation_references.torch.{key}" in caught.value.key
