"""Invariants on the path a job runs (replicate/runner/path_invariants.py), through the loop's own
``predict_into`` and training step: every smoke implementation holds them, and a defect of each
kind on that path (none of them in the selftest catalogue) is named before training is paid for."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from replicate.errors import PathInvariantBroken
from replicate.failures import classify
from tests.runner.loops import set_up_loop

SMOKE = [["model=faster_rcnn"], ["model=retinanet"], ["model=mask_rcnn"], ["model=centernet"],
         ["model=yolov3"], ["model=yolov4"], ["model=pix2pix"], ["model=yolov3", "framework=tensorflow"]]


def _loop(model: list[str], results_dir: Path, shapes_root: Path, tiny: list[str]):
    return set_up_loop([*model, "tier.compare_with=none", *tiny], results_dir, shapes_root)


@pytest.mark.parametrize("model", SMOKE, ids=lambda m: "-".join(x.split("=")[1] for x in m))
def test_every_smoke_implementation_holds_the_evaluation_invariants(model, results_dir, shapes_root, tiny):
    loop = _loop(model, results_dir, shapes_root, tiny)
    rng = torch.get_rng_state()
    loop.check_evaluation_path()
    record = loop.result.environment["evaluation_path"]
    assert record["model_unchanged"] and record["repeatable"] and record["batch_independent"], record
    assert record["images"] >= 2 and record["largest_change_in_tolerances"] <= 1.0
    assert record["batch_size"] > 1   # the smoke tiers evaluate several images per batch: batch mates compared
    # untrained, retinanet's scores sit at its prior (0.01), under the 0.05 threshold: nothing to
    # compare yet, so the loop checks again before its final evaluation (test below)
    assert record["values_compared"] > 0 or model == ["model=retinanet"], record
    assert torch.equal(torch.get_rng_state(), rng)   # the training's random draws are where they were


def _broken(loop, match: str) -> PathInvariantBroken:
    with pytest.raises(PathInvariantBroken, match=match) as caught:
        loop.check_evaluation_path()
    failure = classify(caught.value, "evaluation")
    assert (failure.stage, failure.impact) == ("evaluation", "incorrect functionality")
    return caught.value


def test_an_evaluation_left_in_training_mode_is_named(results_dir, shapes_root, tiny, monkeypatch):
    """The loop's inference context forgets model.eval() (only no_grad): yolov4's batch norms
    would normalise each evaluated batch with its own statistics."""
    loop = _loop(["model=yolov4"], results_dir, shapes_root, tiny)
    monkeypatch.setattr(type(loop), "inference", lambda self: torch.no_grad())
    _broken(loop, r"evaluating with \d+ module\(s\) in training mode")


def test_a_prediction_that_writes_the_model_is_named(results_dir, shapes_root, tiny, monkeypatch):
    """Post-processing that runs the network once more in training mode (to 'refine' boxes):
    batch norm's running statistics move under evaluation."""
    loop = _loop(["model=centernet"], results_dir, shapes_root, tiny)
    predict = loop.task.predict

    def refining(model, batch):
        model.train()
        model(batch[0] if isinstance(batch[0], torch.Tensor) else torch.stack(list(batch[0])))
        model.eval()
        return predict(model, batch)

    monkeypatch.setattr(loop.task, "predict", refining)
    error = _broken(loop, "evaluating changed the model: .*running_mean|running_var|num_batches_tracked")
    assert "batch norm" in str(error)


def test_scores_normalised_over_the_batch_are_named(results_dir, shapes_root, tiny, monkeypatch):
    """Scores divided by the batch's best: an image's score then depends on its batch mates."""
    loop = _loop(["model=faster_rcnn"], results_dir, shapes_root, tiny)
    predict = loop.task.predict

    def per_batch(model, batch):
        out = predict(model, batch)
        best = max(float(p["scores"].max()) if len(p["scores"]) else 0.0 for p in out) or 1.0
        return [{**p, "scores": p["scores"] / best} for p in out]

    monkeypatch.setattr(loop.task, "predict", per_batch)
    _broken(loop, "depend on its batch mates: image . scores")


def test_a_random_draw_in_post_processing_is_named(results_dir, shapes_root, tiny, monkeypatch):
    """Dropout left on in a head (here: scores jittered as dropout would) makes two evaluations differ."""
    loop = _loop(["model=faster_rcnn"], results_dir, shapes_root, tiny)
    predict = loop.task.predict
    monkeypatch.setattr(loop.task, "predict", lambda model, batch: [
        {**p, "scores": p["scores"] * (1 + 0.01 * torch.rand_like(p["scores"]))} for p in predict(model, batch)])
    _broken(loop, "evaluating twice gave other predictions")


def test_a_tensorflow_prediction_in_training_mode_is_named(results_dir, shapes_root, tiny, monkeypatch):
    """Keras keeps no mode on the model: a call with training=True during evaluation shows as
    batch norm's moving statistics moving."""
    from replicate.tf_import import tensorflow

    loop = _loop(["model=yolov3", "framework=tensorflow"], results_dir, shapes_root, tiny)
    predict = loop.task.predict

    def training_call(model, batch):
        model(tensorflow().convert_to_tensor(batch[0]["images"]), training=True)
        return predict(model, batch)

    monkeypatch.setattr(loop.task, "predict", training_call)
    _broken(loop, "evaluating changed the model: .*moving")


def test_a_training_step_in_inference_mode_is_named(results_dir, shapes_root, tiny, monkeypatch):
    """model.eval() where the loop should switch to training: batch norm trains on frozen
    statistics and dropout is off; the first step says so."""
    from replicate.runner.torch_loop import TorchLoop

    monkeypatch.setattr(TorchLoop, "enter_training", lambda self: self.model.eval())
    loop = _loop(["model=yolov4"], results_dir, shapes_root, tiny)
    with pytest.raises(PathInvariantBroken, match="training step 1 ran with the model in inference mode") as caught:
        loop.run()
    assert classify(caught.value, "training").stage == "training"


def test_pix2pix_paper_inference_is_held_to_an_unchanged_model_only(results_dir, shapes_root, tiny, monkeypatch):
    loop = _loop(["model=pix2pix"], results_dir, shapes_root, tiny)
    monkeypatch.setattr(type(loop.task), "evaluation_is_stochastic", lambda self: True)   # the full tier's setting
    loop.check_evaluation_path()
    record = loop.result.environment["evaluation_path"]
    assert record["model_unchanged"] and "samples by design" in record["not_compared"]


def _run(model: list[str], results_dir: Path, shapes_root: Path, tiny: list[str]) -> dict:
    from replicate.harness import run_one

    results_dir.mkdir(parents=True, exist_ok=True)
    result = run_one([*model, f"results_dir={results_dir}", f"datasets.shapes.root={shapes_root}",
                      "scheduler=inline", "tier.compare_with=none", *tiny], echo=lambda _: None)
    (row,) = result.jobs
    assert row["verdict"] == "MEASURED", row.get("failure_message")
    return row


def test_a_check_that_compared_nothing_runs_again_on_the_trained_model(results_dir, shapes_root, tiny,
                                                                        monkeypatch):
    from replicate.runner.base_loop import BaseLoop

    records = []
    check = BaseLoop.check_evaluation_path

    def counted(self):
        check(self)
        records.append(dict(self.result.environment["evaluation_path"]))

    monkeypatch.setattr(BaseLoop, "check_evaluation_path", counted)
    _run(["model=retinanet"], results_dir, shapes_root, tiny)
    assert records[0]["values_compared"] == 0 and len(records) == 2   # untrained: nothing; so again


@pytest.mark.parametrize("model", [["model=yolov4"], ["model=pix2pix"]])   # darknet jitter; pix2pix's crops
def test_the_checks_leave_training_bit_identical(model, results_dir, shapes_root, tiny, monkeypatch):
    """Every random stream is put back: the job trains exactly as it would unchecked (the smoke
    references stay valid)."""
    from replicate.runner.base_loop import BaseLoop

    checked = _run(model, results_dir / "checked", shapes_root, tiny)
    monkeypatch.setattr(BaseLoop, "check_evaluation_path", lambda self: None)
    unchecked = _run(model, results_dir / "unchecked", shapes_root, tiny)
    assert [p.get("loss") for p in checked["curve"]] == [p.get("loss") for p in unchecked["curve"]]
    assert checked["metrics"] == unchecked["metrics"]


@pytest.mark.parametrize("model, attribute, value, said", [
    ("faster_rcnn", "roi_heads.score_thresh", 0.3, "roi_heads.score_thresh is 0.3, torchvision's FasterRCNN"),
    ("mask_rcnn", "roi_heads.nms_thresh", 0.7, "roi_heads.nms_thresh is 0.7, torchvision's MaskRCNN"),
    ("retinanet", "detections_per_img", 100, "detections_per_img is 100, torchvision's RetinaNet"),
    ("faster_rcnn", "rpn.proposal_matcher.high_threshold", 0.6, "rpn.proposal_matcher.high_threshold is 0.6"),
])
def test_a_detector_setting_off_the_reference_is_named(model, attribute, value, said, results_dir, shapes_root,
                                                       tiny):
    """A post-processing or anchor-matching setting changed on the way (here on the built model)
    is compared with the torchvision constructor's own default: named before any training."""
    import operator

    loop = _loop([f"model={model}"], results_dir, shapes_root, tiny)
    owner, name = attribute.rsplit(".", 1) if "." in attribute else ("", attribute)
    setattr(operator.attrgetter(owner)(loop.model) if owner else loop.model, name, value)
    error = _broken(loop, "differs from the reference's")
    assert said in str(error)


def test_a_setting_the_variant_declares_is_a_recorded_deviation(results_dir, shapes_root, tiny):
    loop = _loop(["model=faster_rcnn", "+model.variants.small.arch.detector_kwargs={box_score_thresh: 0.1}"],
                 results_dir, shapes_root, tiny)
    loop.check_evaluation_path()
    assert loop.result.environment["declared_deviations"] == {"box_score_thresh": {"value": 0.1, "reference": 0.05}}


def test_a_discriminator_that_never_sees_the_label_map_is_named(results_dir, shapes_root, tiny, monkeypatch):
    """A port that stacks the photo twice (``torch.cat((fake_B, fake_B), 1)`` for ``(real_A,
    fake_B)``): the discriminator's first layer keeps its six channels and trains, L1 barely moves,
    and the GAN is no longer conditional. Named at the job's start, before training."""
    loop = _loop(["model=pix2pix"], results_dir, shapes_root, tiny)
    discriminator = loop.model.discriminator
    forward = discriminator.forward
    monkeypatch.setattr(discriminator, "forward", lambda x: forward(torch.cat([x[:, 3:], x[:, 3:]], 1)))
    _broken(loop, "the discriminator ignores its condition")


def test_the_input_rule_changes_nothing_it_reads(results_dir, shapes_root, tiny):
    """The check runs the networks in inference mode and puts the mode back: no running statistic
    moves and the loop's random draws are where they were."""
    loop = _loop(["model=pix2pix"], results_dir, shapes_root, tiny)
    loop.model.train()
    before = loop.state_snapshot()
    assert loop.task.ignored_inputs(loop.model, loop.evaluation_set()) == []
    assert loop.model.training
    assert all(torch.equal(torch.as_tensor(v), torch.as_tensor(loop.state_snapshot()[k])) for k, v in before.items())
