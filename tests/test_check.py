"""`replicate check` passes for every registered model (parametrized over the registry)."""

from __future__ import annotations

import pytest

from replicate.check import run_check
from replicate.zoo.registry import frameworks_of, registered_names


@pytest.mark.parametrize("model", registered_names())
def test_check_passes_for_every_registered_model(model, results_dir, shapes_root, tiny):
    data = [o for o in tiny if o.startswith("datasets.")]
    report = run_check([f"model={model}", f"results_dir={results_dir}", f"datasets.shapes.root={shapes_root}",
                        *data, "tier.compare_with=none"], echo=print, visual=True)
    failed = [c for c in report.checks if not c["ok"]]
    assert not failed, failed
    assert {c["check"] for c in report.checks} >= {"config", "params", "shapes", "gradients", "overfit", "statistics",
                                                   "visual"}
    if model == "pix2pix":   # its networks declare their inputs: the conditional D reads the label map
        assert "every declared input" in next(c["detail"] for c in report.checks if c["check"] == "inputs")
    if len(frameworks_of(model)) > 1:  # torch vs TensorFlow differential (or why it was skipped)
        assert "differential" in {c["check"] for c in report.checks}
    assert (results_dir / "check" / f"{model}_samples.png").stat().st_size > 0


def test_check_loads_the_given_checkpoint_and_fails_on_one_that_does_not_fit(results_dir, shapes_root, tiny,
                                                                              tmp_path):
    import torch

    from replicate.cli import main

    data = [o for o in tiny if o.startswith("datasets.")]
    common = ["model=yolov4", f"results_dir={results_dir}", f"datasets.shapes.root={shapes_root}", *data]
    short = tmp_path / "short.weights"
    short.write_bytes(b"\x00" * 40)   # a darknet header and nothing else
    assert main(["check", *common, f"checkpoint={short}"]) == 1
    report = run_check([*common, f"checkpoint={short}"], echo=lambda _: None)
    (item,) = [c for c in report.checks if c["check"] == "checkpoint"]
    assert not item["ok"] and str(short) in item["detail"]
    other = tmp_path / "other.pt"
    torch.save({"model": {"conv.weight": torch.zeros(3)}}, other)
    report = run_check([*common, f"checkpoint={other}"], echo=lambda _: None)
    (item,) = [c for c in report.checks if c["check"] == "checkpoint"]
    assert not item["ok"] and "does not fit the model" in item["detail"]


def test_inference_that_depends_on_the_batch_fails_the_batch_check(tmp_path):
    """yolov3 with model.eval() forgotten at inference: image 0's scores change when image 1
    shares its batch. The clean model's are equal to float noise."""
    common = ["model=yolov3", f"results_dir={tmp_path}", "datasets.shapes.num_train=16", "datasets.shapes.num_val=8",
              "datasets.shapes.image_size=64", "model.tiers.smoke.input_size=64"]
    clean = {c["check"]: c for c in run_check(common, echo=lambda _: None).checks}
    assert clean["batch"]["ok"], clean["batch"]
    broken = {c["check"]: c for c in run_check(common + ["defect=bn_train_mode_at_inference"],
                                               echo=lambda _: None).checks}
    assert not broken["batch"]["ok"] and "depends on the batch" in broken["batch"]["detail"]


@pytest.mark.parametrize("model, defect", [("centernet", "center_offset_half_cell"),
                                           ("yolov4", "anchor_wh_swapped_in_decoding")])
def test_targets_that_do_not_decode_to_the_boxes_fail_the_round_trip(model, defect, tmp_path):
    """A perfect model's output (what the loss trains toward) replayed through predict: the clean
    encoding decodes to every box; CenterNet's offset measured from the cell's centre, or YOLO's
    anchors read as (h, w) when decoding, put the boxes elsewhere."""
    common = [f"model={model}", f"results_dir={tmp_path}", "datasets.shapes.num_train=16",
              "datasets.shapes.num_val=8"]
    clean = {c["check"]: c for c in run_check(common, echo=lambda _: None).checks}
    assert clean["targets"]["ok"] and "6/6" in clean["targets"]["detail"], clean["targets"]
    broken = {c["check"]: c for c in run_check(common + [f"defect={defect}"], echo=lambda _: None).checks}
    assert not broken["targets"]["ok"] and "disagree" in broken["targets"]["detail"], broken["targets"]


@pytest.mark.slow   # 25 s; a job's step in inference mode is named by tests/runner/test_path_invariants.py
def test_training_in_inference_mode_fails_the_statistics_check(tmp_path):
    """The Keras model called with training=False in its training step: batch norm's moving
    statistics never move. The clean TensorFlow build updates every one of them."""
    common = ["model=yolov3", "framework=tensorflow", f"results_dir={tmp_path}", "datasets.shapes.num_train=16",
              "datasets.shapes.num_val=8", "datasets.shapes.image_size=64", "model.tiers.smoke.input_size=64"]
    clean = {c["check"]: c for c in run_check(common, echo=lambda _: None).checks}
    assert clean["statistics"]["ok"] and "22/22" in clean["statistics"]["detail"], clean["statistics"]
    broken = {c["check"]: c for c in run_check(common + ["defect=keras_training_false_in_step"],
                                               echo=lambda _: None).checks}
    assert not broken["statistics"]["ok"] and "inference mode" in broken["statistics"]["detail"]


def test_the_statistics_check_lists_batch_norm_only_and_names_what_did_not_move():
    import torch

    from replicate.runner.norm_statistics import running_statistics, statistics_moved

    frozen = torch.nn.BatchNorm2d(4, momentum=0.0)   # its running statistics never move
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), frozen)
    names = [n for n, _ in running_statistics(model)]
    assert names == ["1.running_mean", "1.running_var", "2.running_mean", "2.running_var"]
    before = [t.clone() for _, t in running_statistics(model)]
    model.train()
    model(torch.randn(2, 3, 8, 8))
    unchanged = [bool(torch.equal(b, t)) for b, (_, t) in zip(before, running_statistics(model))]
    ok, detail = statistics_moved(names, unchanged)
    assert not ok and "2/4 running statistics moved" in detail and "2.running_mean" in detail
    assert statistics_moved([], []) == (True, "no normalisation layer keeps running statistics")
