"""The TensorFlow loop through run_job: checkpoints and resume, early abort, NaN guard, learning;
distribution-strategy selection from the hardware profile; framework-specific references."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from models.darknet.tf_backend import tensorflow, tf_available
from replicate.config.compose import compose_config, group_options
from replicate.harness import run_one
from replicate.runner import checkpoint as ckpt
from replicate.runner.strategy import DEFAULT, MIRRORED, TPU, make_strategy, strategy_kind

REFERENCE = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "darknet"
if not tf_available():
    pytest.skip("tensorflow is not installed (pip install -e '.[tensorflow]')", allow_module_level=True)
tf = tensorflow()  # through the helper: it loads triton first (see tf_backend._load_triton_first)
needs_cfgs = pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"official cfgs not found at {REFERENCE}")


def _common(results_dir: Path, shapes_root: Path, tiny: list[str]) -> list[str]:
    return ["model=yolov3", "framework=tensorflow", "scheduler=inline", f"results_dir={results_dir}",
            f"datasets.shapes.root={shapes_root}", *tiny]


def _checkpoints(results_dir: Path) -> list[Path]:
    return sorted((results_dir / "checkpoints").glob(f"*/{ckpt.LATEST}"))


@pytest.mark.parametrize("profile", group_options("hardware"))
def test_strategy_is_a_function_of_the_hardware_profile(profile):
    hardware = compose_config(["model=yolov3", f"hardware={profile}", "tier.compare_with=none"]).hardware
    expected = TPU if hardware.accelerator == "tpu" else MIRRORED if (hardware.accelerator == "gpu" and
                                                                      hardware.count > 1) else DEFAULT
    assert strategy_kind(hardware) == expected
    if profile.startswith("tpu_"):
        assert hardware.ray.resources["TPU"] == hardware.count and hardware.ray.num_gpus == 0


def test_cpu_profile_runs_under_the_default_strategy():
    hardware = OmegaConf.create({"name": "cpu", "accelerator": "cpu", "count": 1})
    strategy = make_strategy(hardware, tf)
    assert strategy is tf.distribute.get_strategy() and strategy.num_replicas_in_sync == 1
    gpus = OmegaConf.create({"name": "a100x8", "accelerator": "gpu", "count": 8})
    assert strategy_kind(gpus) == MIRRORED


def test_a_tpu_profile_selects_the_tensorflow_implementation_and_strategy():
    cfg = compose_config(["model=yolov3", "hardware=tpu_v3_8", "tier.compare_with=none"])
    from replicate.plan import make_spec

    assert make_spec(cfg, None).framework == "tensorflow" and strategy_kind(cfg.hardware) == TPU


@needs_cfgs
def test_tf_job_checkpoints_and_resumes_from_the_latest(results_dir, shapes_root, tiny):
    common = _common(results_dir, shapes_root, tiny) + ["tier.compare_with=none"]
    (first,) = run_one(common, echo=lambda _: None).jobs
    assert first["verdict"] == "PASS", first["failure_message"]
    assert first["steps_done"] == 4 and "bbox_AP" in first["metrics"]
    (path,) = _checkpoints(results_dir)
    state = ckpt.load_latest(path.parent)
    assert state["step"] == 4 and "tf_model" in state and "tf_optimizer" in state
    assert not list(path.parent.glob(".*.tmp"))                       # written atomically
    # the finished job's directory is reset on a re-run; resume a longer schedule in place
    from replicate.jobs import JobResult
    from replicate.plan import make_spec
    from replicate.runner.job import build_task
    from replicate.runner.tf_loop import TfLoop
    from replicate.runner.torch_loop import RunContext

    cfg = compose_config(common + ["model.tiers.smoke.recipe.steps=6"])
    ctx = RunContext(checkpoint_dir=path.parent, progress=False, metric="bbox_AP")
    loop = TfLoop(build_task(make_spec(cfg, None), cfg).framework_task("tensorflow"), cfg, ctx, JobResult("resume"))
    second = loop.run()
    assert second.steps_done == 6 and second.restarts == 1
    assert [p["step"] for p in second.curve if "loss" in p] == [1, 2, 3, 4, 5, 6]
    assert second.images_seen == 6 * cfg.model.tiers.smoke.recipe.batch_size
    assert second.times.train_s > 0 and second.environment["tf_strategy"] == "_DefaultDistributionStrategy"


@needs_cfgs
def test_far_below_the_reference_curve_stops_with_early_abort(results_dir, shapes_root, tiny):
    overrides = _common(results_dir, shapes_root, tiny) + ["model.tiers.smoke.recipe.steps=8",
                                                           "tier.early_check.tolerance=0.01"]
    (row,) = run_one(overrides, echo=lambda _: None).jobs
    assert row["verdict"] == "EARLY_ABORT"
    assert row["steps_done"] == 2 and row["early_check"]["aborted"]


@needs_cfgs
@pytest.mark.slow
def test_a_diverging_loss_is_a_numerical_error(results_dir, shapes_root, tiny):
    overrides = _common(results_dir, shapes_root, tiny) + ["tier.compare_with=none",
                                                           "model.tiers.smoke.recipe.lr=1e30"]
    (row,) = run_one(overrides, echo=lambda _: None).jobs
    assert row["verdict"] == "ERROR"
    assert (row["failure_stage"], row["failure_impact"]) == ("training", "numerical error")


@needs_cfgs
@pytest.mark.slow
def test_tensorflow_smoke_tier_learns_and_shuffled_labels_do_not_pass(results_dir):
    common = ["model=yolov3", "framework=tensorflow", f"results_dir={results_dir}", "scheduler=inline"]
    untrained = run_one([*common, "model.tiers.smoke.recipe.steps=1", "tier.compare_with=none",
                         "tier.early_check.enabled=false"], echo=print).jobs[0]
    trained = run_one(common, echo=print).jobs[0]
    shuffled = run_one([*common, "shuffle_labels=true"], echo=print).jobs[0]
    before, after = untrained["metrics"]["bbox_AP"], trained["metric_value"]
    print(f"yolov3/tensorflow: bbox_AP untrained {before:.4g} -> trained {after:.4g}; shuffled "
          f"{shuffled['verdict']} {shuffled['metric_value']}")
    assert trained["verdict"] == "PASS", trained["failure_message"]
    assert after >= 3 * before and after > 0
    assert shuffled["verdict"] != "PASS"


def test_a_tensorflow_job_compares_with_the_tensorflow_reference():
    tf_cfg = compose_config(["model=yolov3", "framework=tensorflow"])
    torch_cfg = compose_config(["model=yolov3"])
    recorded = torch_cfg.model.tiers.smoke.framework_references.tensorflow
    assert tf_cfg.model.tiers.smoke.reference == recorded
    assert "framework=tensorflow" in recorded.source
    assert torch_cfg.model.tiers.smoke.reference.value != recorded.value


def test_a_reference_for_an_undeclared_framework_is_refused():
    from replicate.config.validate import validate
    from replicate.errors import ConfigError

    cfg = compose_config(["model=yolov3"])
    with open_dict(cfg):
        cfg.model.tiers.smoke.framework_references["jax"] = cfg.model.tiers.smoke.reference
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert err.value.key == "model.tiers.smoke.framework_references"
