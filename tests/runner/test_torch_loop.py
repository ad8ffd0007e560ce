"""The torch loop through run_job: checkpoints and resume, early abort, failure classes."""

from __future__ import annotations

from pathlib import Path

import pytest

from replicate.config.compose import compose_config
from replicate.errors import ConfigError, DataError
from replicate.harness import run_one
from replicate.jobs import JobResult
from replicate.resolved import make_spec
from replicate.runner import checkpoint as ckpt
from replicate.runner.torch_loop import RunContext, TorchLoop
from replicate.runner.worker import build_task, checkpoint_dir
from replicate.verdict import EarlyCheck


def _common(results_dir: Path, shapes_root: Path, tiny: list[str]) -> list[str]:
    return ["model=faster_rcnn", "scheduler=inline", f"results_dir={results_dir}",
            f"datasets.shapes.root={shapes_root}", *tiny]


# Evaluate at the early check with nothing to judge (a calibration run's path)
EVALUATE_EARLY = EarlyCheck(fraction=0.25, evaluate=True)


def _loop(overrides: list[str]) -> TorchLoop:
    cfg = compose_config(overrides)
    spec = make_spec(cfg, None)
    ctx = RunContext(checkpoint_dir=checkpoint_dir(cfg, "resume-test"), progress=False, metric="bbox_AP")
    return TorchLoop(build_task(spec, cfg), cfg, ctx, JobResult(spec.job_id))


def test_resume_continues_from_the_latest_checkpoint(results_dir, shapes_root, tiny):
    common = _common(results_dir, shapes_root, tiny) + ["tier.compare_with=none"]
    first = _loop(common).run()
    assert first.steps_done == 4 and first.restarts == 0
    directory = checkpoint_dir(compose_config(common), "resume-test")
    assert ckpt.load_latest(directory)["step"] == 4
    # A longer schedule over the same checkpoint directory picks up at step 4, not 0.
    second = _loop(common + ["model.tiers.smoke.recipe.steps=6"]).run()
    assert second.steps_done == 6 and second.restarts == 1
    logged = [p["step"] for p in second.curve if "loss" in p]
    assert logged == [1, 2, 3, 4, 5, 6]
    assert second.images_seen == 6 * 4


def test_far_below_the_reference_curve_stops_with_early_abort_and_records_saved_cost(results_dir, shapes_root,
                                                                                     tiny):
    overrides = _common(results_dir, shapes_root, tiny) + [
        "model.tiers.smoke.recipe.steps=8", "tier.early_check.tolerance=0.01",
        "model.tiers.smoke.reference.curve_spread={}"]  # no spread: the relative tolerance applies
    (row,) = run_one(overrides, echo=lambda _: None).jobs
    assert row["verdict"] == "EARLY_ABORT"
    assert (row["failure_stage"], row["failure_impact"]) == ("training", "accuracy below expectations")
    assert row["steps_done"] == 2 and row["steps_planned"] == 8
    assert row["early_check"]["aborted"] and row["early_check"]["saved_train_s"] > 0


def test_a_training_loss_far_from_every_calibration_draw_stops_at_the_early_check(results_dir, shapes_root, tiny):
    """The loss band is two-sided: here every healthy draw's loss was ~1e-3 and this run's is not."""
    ref = "model.tiers.smoke.reference"
    overrides = _common(results_dir, shapes_root, tiny) + [
        "model.tiers.smoke.recipe.steps=8", f"{ref}.draws=[20.0,21.0,22.0,20.5,21.5,22.5]", f"{ref}.labels=[]",
        f"{ref}.early_draws=[]", f"{ref}.early_loss_draws=[0.0010,0.0011,0.0012,0.0010,0.0011,0.0012]",
        f"{ref}.final_loss_draws=[]", f"{ref}.early_drift_draws=[]",
        f"{ref}.curve_spread={{}}", "tier.early_check.tolerance=0.999"]   # the metric floor: ~0, never hit
    (row,) = run_one(overrides, echo=lambda _: None).jobs
    check = row["early_check"]
    assert row["verdict"] == "EARLY_ABORT" and check["reason"] == "loss", check
    assert check["train_loss"] > check["loss_band"][1] and row["steps_done"] == 2
    assert "training loss" in row["failure_message"] and "outside" in row["failure_message"]
    # the loss is judged first and stopped the job before the evaluation was paid for
    assert check["metric"] is None and row["eval_s"] == 0.0 and row["metric_value"] is None
    assert not any("bbox_AP" in point for point in row["curve"])


def test_a_final_training_loss_far_from_every_calibration_draw_is_off_curve(results_dir, shapes_root, tiny):
    """The metric is inside a band that cannot miss; the last quarter's loss is not the draws'."""
    ref = "model.tiers.smoke.reference"
    overrides = _common(results_dir, shapes_root, tiny) + [
        "model.tiers.smoke.recipe.steps=8", "tier.early_check.enabled=false",
        f"{ref}.value=0.0", f"{ref}.spread=1000.0", f"{ref}.draws=[-1e3,1e3,-1e3,1e3,-1e3,1e3]", f"{ref}.labels=[]",
        f"{ref}.early_draws=[]", f"{ref}.early_loss_draws=[]", f"{ref}.early_drift_draws=[]",
        f"{ref}.final_loss_draws=[0.0010,0.0011,0.0012,0.0010,0.0011,0.0012]"]
    (row,) = run_one(overrides, echo=lambda _: None).jobs
    assert row["verdict"] == "OFF_CURVE", row["failure_message"]
    assert row["failure_stage"] == "training" and "last quarter" in row["failure_message"]
    assert row["compared_with"]["loss_band"][1] < 0.01 and row["steps_done"] == 8


def test_a_missing_checkpoint_is_refused_before_scheduling_and_by_the_loop(results_dir, shapes_root, tiny):
    common = _common(results_dir, shapes_root, tiny) + ["tier.compare_with=none"]
    with pytest.raises(ConfigError, match="checkpoint: /no/such/weights.pt does not exist"):
        run_one(common + ["checkpoint=/no/such/weights.pt"], echo=lambda _: None)
    # gone between validation and the job (another volume, a cleanup): a data error naming it
    weights = results_dir / "weights.pt"
    weights.parent.mkdir(parents=True, exist_ok=True)
    weights.write_bytes(b"w")
    loop = _loop(common + [f"checkpoint={weights}"])
    weights.unlink()
    with pytest.raises(DataError, match=f"{weights}: checkpoint file not found"):
        loop.setup()


def test_shuffled_labels_change_the_training_targets(shapes_root, tiny, results_dir):
    common = _common(results_dir, shapes_root, tiny) + ["tier.compare_with=none"]
    plain = _loop(common).task.build_dataset("train", train=True)
    shuffled = _loop(common + ["shuffle_labels=true"]).task.build_dataset("train", train=True)
    differing = sum(not plain[i][1]["boxes"].shape == shuffled[i][1]["boxes"].shape
                    or not (plain[i][1]["boxes"] == shuffled[i][1]["boxes"]).all() for i in range(len(plain)))
    assert differing >= len(plain) // 2


def test_an_attempt_that_died_before_its_first_checkpoint_counts_as_a_restart(results_dir, shapes_root, tiny):
    """Its retry trains from step 0: the work of the dead attempt is lost, and the store says so."""
    common = _common(results_dir, shapes_root, tiny) + ["tier.compare_with=none"]
    directory = checkpoint_dir(compose_config(common), "resume-test")
    directory.mkdir(parents=True)
    # what a worker killed at step 1 of its second attempt leaves: the heartbeat, no latest.pt
    ckpt.write_json(directory / ckpt.PROGRESS, {"step": 1, "train_s": 2.5, "restarts": 1, "lost_s": 4.0})
    result = _loop(common).run()
    assert result.steps_done == 4 and result.restarts == 2
    assert result.times.lost_s == pytest.approx(6.5)
    # a first attempt (no heartbeat) is no restart
    fresh = _loop(_common(results_dir / "fresh", shapes_root, tiny) + ["tier.compare_with=none"]).run()
    assert fresh.restarts == 0 and fresh.times.lost_s == 0.0


def test_weights_that_moved_unlike_every_calibration_draw_stop_at_the_early_check(results_dir, shapes_root, tiny):
    """Every healthy draw moved its weights ~1e-6 of their norm by the early check; this run's
    moved more: EARLY_ABORT on the drift, before the evaluation is paid for."""
    ref = "model.tiers.smoke.reference"
    overrides = _common(results_dir, shapes_root, tiny) + [
        "model.tiers.smoke.recipe.steps=8", f"{ref}.draws=[20.0,21.0,22.0,20.5,21.5,22.5]", f"{ref}.labels=[]",
        f"{ref}.early_draws=[]", f"{ref}.early_loss_draws=[]", f"{ref}.final_loss_draws=[]",
        f"{ref}.early_drift_draws=[1.0e-6,1.1e-6,1.2e-6,1.0e-6,1.1e-6,1.2e-6]",
        f"{ref}.curve_spread={{}}", "tier.early_check.tolerance=0.999"]   # the metric floor: ~0, never hit
    (row,) = run_one(overrides, echo=lambda _: None).jobs
    check = row["early_check"]
    assert row["verdict"] == "EARLY_ABORT" and check["reason"] == "weights", str(check)
    assert check["weight_drift"] > check["drift_band"][1] and row["steps_done"] == 2
    assert "weights moved" in row["failure_message"] and "outside" in row["failure_message"]
    assert check["metric"] is None and row["eval_s"] == 0.0
    job_dir = checkpoint_dir(compose_config(overrides), row["job_id"])
    assert not (job_dir / ckpt.INITIAL_WEIGHTS).exists()   # kept only until the check measured the drift


def test_the_weight_drift_is_measured_from_the_start_across_a_resume(results_dir, shapes_root, tiny):
    """A job stopped before its early check resumes with the weights it started from (kept beside
    the checkpoint), so its drift equals an uninterrupted run's."""
    common = _common(results_dir, shapes_root, tiny) + ["tier.compare_with=none", "model.tiers.smoke.recipe.steps=8",
                                                        "model.tiers.smoke.recipe.checkpoint_every=1"]
    whole = _loop(common)
    whole.ctx.checkpoint_dir = whole.ctx.checkpoint_dir.with_name("whole")
    whole.ctx.early = EVALUATE_EARLY
    drift = whole.run().early_check["weight_drift"]
    assert drift > 0
    first = _loop(common)
    first.ctx.early = EVALUATE_EARLY
    step = first.train_step

    def killed_after_one_step(batch):
        if first.step == 1:
            raise KeyboardInterrupt   # as a job killed between its checkpoint at step 1 and the check at 2
        return step(batch)

    first.train_step = killed_after_one_step
    with pytest.raises(KeyboardInterrupt):
        first.run()
    assert (first.ctx.checkpoint_dir / ckpt.INITIAL_WEIGHTS).is_file()
    second = _loop(common)
    second.ctx.early = EVALUATE_EARLY
    resumed = second.run()
    assert resumed.restarts == 1 and resumed.early_check["weight_drift"] == pytest.approx(drift, rel=1e-6)
