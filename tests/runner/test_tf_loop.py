"""The TensorFlow loop: through run_job (checkpoints and resume, early abort, NaN guard, learning)
and directly on a toy task (multi-replica gradients, batch split, checkpoint shapes); the
distribution strategy of each hardware profile; framework-specific references.

TensorFlow is imported in fixtures, never at collection: its thread pools are fixed at the first
import for the whole process. The multi-replica test runs in a subprocess, because logical CPU
devices can only be configured before TensorFlow initialises.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from omegaconf import open_dict

from replicate.config.compose import compose_config
from replicate.config.conf_tree import group_options
from replicate.errors import ConfigError, DataError, ResourceUnavailable
from replicate.harness import run_one
from replicate.jobs import JobResult
from replicate.resolved import make_spec, resolve_job
from replicate.runner import checkpoint as ckpt
from replicate.runner.strategy import DEFAULT, MIRRORED, TPU, TPU_NAME_ENV, make_strategy, strategy_kind
from replicate.runner.tf_loop import TfLoop
from replicate.runner.torch_loop import RunContext
from replicate.tf_import import tensorflow, tf_available

ROOT = Path(__file__).resolve().parents[2]
if not tf_available():
    pytest.skip("tensorflow is not installed (pip install -e '.[tensorflow]')", allow_module_level=True)

# What each profile of conf/hardware must run under: stated, not recomputed from the profile.
EXPECTED_STRATEGY = {"cpu": DEFAULT, "h100x1": DEFAULT, "a100x8": MIRRORED, "h100x8": MIRRORED,
                     "v100x8": MIRRORED, "tpu_v3_8": TPU, "tpu_v4_8": TPU}
# The augmentation draws come from the train set's own generator, which no checkpoint holds (a
# resumed run redraws from its seed): without them a resumed run must match an uninterrupted one.
NO_AUGMENTATION = ["model.tiers.smoke.recipe.extra.jitter=0.0", "+model.tiers.smoke.recipe.extra.flip=false",
                   "+model.tiers.smoke.recipe.extra.saturation=1.0", "+model.tiers.smoke.recipe.extra.exposure=1.0"]
# SGD with momentum, L2 decay and a clip that binds: the recipe where replicas could disagree.
TOY_RECIPE = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.05, "grad_clip": 0.05,
              "warmup_steps": 0, "batch_size": 8, "steps": 2, "checkpoint_every": 100, "log_every": 1}



# --------------------------------------------------------------------------- helpers
class LinearTask:
    """A two-layer regression without batch norm, in the TfLoop's task interface.

    Its loss is a mean of per-sample losses, so one replica on the global batch and n replicas on
    its shares compute the same function; variant ``wide`` has the same number of arrays as
    ``small`` but other shapes (a checkpoint of one cannot load into the other).
    """

    def __init__(self, variant: str = "small", size: int = 16):
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(size, 3)).astype(np.float32)
        self.y = (self.x @ np.array([1.0, -2.0, 0.5], np.float32) + 0.3).astype(np.float32)
        self.ctx = SimpleNamespace(variant=variant, seed=0)   # the job's seed, as build_task gives it

    def prepare_data(self) -> str:
        return "linear"

    def load_checkpoint(self, model: Any, path: Path) -> bool:
        return False

    def decayed_parameters(self, model: Any, recipe: Any) -> None:
        return None   # Task's default: the recipe's decay on every variable

    def build_model(self, variant: str) -> Any:
        keras = tensorflow().keras
        hidden = {"small": 4, "wide": 5}[variant]
        return keras.Sequential([keras.Input((3,)), keras.layers.Dense(hidden, activation="tanh"),
                                 keras.layers.Dense(1)])

    def build_dataset(self, split: str, train: bool) -> list:
        return list(zip(self.x, self.y))

    def collate(self, items: list) -> tuple[dict[str, np.ndarray], None]:
        return {"x": np.stack([i[0] for i in items]), "y": np.stack([i[1] for i in items])}, None

    def batch_size_of(self, batch: Any) -> int:
        return len(batch[0]["x"])

    def training_step(self, model: Any, arrays: dict[str, Any]) -> dict[str, Any]:
        tf = tensorflow()
        return {"loss": tf.reduce_mean(tf.square(model(arrays["x"])[:, 0] - arrays["y"]))}


def _toy_loop(directory: Path, variant: str = "small", **recipe: Any) -> TfLoop:
    overrides = [f"model.tiers.smoke.recipe.{k}={v}" for k, v in {**TOY_RECIPE, **recipe}.items()]
    cfg = compose_config(["model=yolov3", "framework=tensorflow", "tier.compare_with=none", *overrides])
    ctx = RunContext(checkpoint_dir=directory, progress=False)
    return TfLoop(LinearTask(variant), cfg, ctx, JobResult("toy"))


def _yolo_loop(cfg: Any, directory: Path) -> TfLoop:
    from replicate.runner.worker import build_task

    ctx = RunContext(checkpoint_dir=directory, progress=False, metric="bbox_AP")
    return TfLoop(build_task(make_spec(cfg, None), cfg), cfg, ctx, JobResult("direct"))


def _max_difference(a: list, b: list) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b))


def _common(results_dir: Path, shapes_root: Path, tiny: list[str]) -> list[str]:
    return ["model=yolov3", "framework=tensorflow", "scheduler=inline", f"results_dir={results_dir}",
            f"datasets.shapes.root={shapes_root}", *tiny]


def _checkpoints(results_dir: Path) -> list[Path]:
    return sorted((results_dir / "checkpoints").glob(f"*/{ckpt.LATEST}"))


def _hardware(profile: str) -> Any:
    return compose_config(["model=yolov3", f"hardware={profile}", "tier.compare_with=none"]).hardware


# --------------------------------------------------------------------------- strategy
def test_every_hardware_profile_has_a_stated_strategy():
    assert sorted(EXPECTED_STRATEGY) == group_options("hardware")


@pytest.mark.parametrize("profile", group_options("hardware"))
def test_strategy_of_each_hardware_profile(profile):
    hardware = _hardware(profile)
    assert strategy_kind(hardware) == EXPECTED_STRATEGY[profile]
    if profile.startswith("tpu_"):
        assert hardware.ray.resources["TPU"] == hardware.count and hardware.ray.num_gpus == 0


def test_cpu_profile_runs_under_the_default_strategy(tf):
    strategy = make_strategy(_hardware("cpu"), tf)
    assert strategy is tf.distribute.get_strategy() and strategy.num_replicas_in_sync == 1


@pytest.mark.parametrize("profile", ["h100x1", "a100x8"])
def test_a_gpu_profile_without_the_gpus_is_refused_not_run_on_the_cpu(tf, profile):
    hardware = _hardware(profile)
    seen = len(tf.config.list_physical_devices("GPU"))
    if seen >= hardware.count:
        pytest.skip(f"TensorFlow sees {seen} GPUs here")
    with pytest.raises(ResourceUnavailable) as err:
        make_strategy(hardware, tf)
    message = str(err.value)
    assert f"hardware.count={hardware.count}" in message and f"sees {seen}" in message and "\n" not in message


def test_a_tpu_profile_on_an_image_without_a_tpu_runtime_is_refused_saying_so(tf):
    """tensorflow-cpu has no libtpu: not "no TPU reachable" but what the image lacks."""
    import importlib.util

    if importlib.util.find_spec("libtpu") is not None:
        pytest.skip("libtpu is installed here")
    with pytest.raises(ResourceUnavailable, match="tpu_v3_8.*no TPU runtime \\(no libtpu"):
        make_strategy(_hardware("tpu_v3_8"), tf)


@pytest.mark.parametrize("tpu_name", [None, ""])  # unset, or set and empty: two resolver paths
def test_a_tpu_profile_without_a_reachable_tpu_is_refused(tf, monkeypatch, tpu_name):
    """With a TPU runtime in the image (stood in for here: this one has none), no TPU reachable."""
    from replicate.runner import strategy

    monkeypatch.setattr(strategy, "tpu_runtime_missing", lambda _tf: None)
    if tpu_name is None:
        monkeypatch.delenv(TPU_NAME_ENV, raising=False)
    else:
        monkeypatch.setenv(TPU_NAME_ENV, tpu_name)
    with pytest.raises(ResourceUnavailable, match="tpu_v3_8.*TPU but none is reachable"):
        make_strategy(_hardware("tpu_v3_8"), tf)


def test_a_tf_job_on_a_worker_without_the_profiles_gpus_is_an_infrastructure_failure(tf, results_dir, shapes_root,
                                                                                     tiny):
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("TensorFlow sees a GPU here")
    from replicate.runner.worker import run_job
    from replicate.verdict import judge_job, target_for

    # run_job directly: the inline scheduler refuses a GPU profile before any job starts
    cfg = compose_config(_common(results_dir, shapes_root, tiny) + ["hardware=h100x1", "tier.compare_with=none"])
    result = run_job(resolve_job(cfg, None), progress=False)
    assert result.infra and (result.failure.stage, result.failure.impact) == ("infrastructure", "crash")
    assert "ResourceUnavailable" in result.failure.message
    assert judge_job(result, target_for(cfg, "tiny"))[0] == "INFRA"


def test_a_tpu_profile_selects_the_tensorflow_implementation_and_strategy():
    cfg = compose_config(["model=yolov3", "hardware=tpu_v3_8", "tier.compare_with=none"])
    assert make_spec(cfg, None).framework == "tensorflow" and strategy_kind(cfg.hardware) == TPU


# --------------------------------------------------------------------------- replicas
def _one_and_two_replicas(directory: Path) -> dict[str, Any]:
    """In a fresh process: two steps of the toy task on 1 and on 2 logical-CPU replicas."""
    tf = tensorflow()
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    loops = {}
    for n, strategy in ((1, tf.distribute.get_strategy()), (2, tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
        loops[n] = _toy_loop(directory / str(n))
        loops[n].strategy = strategy
        loops[n].setup()
        loops[n].build_training()
    for mirrored, single in zip(loops[2].model.weights, loops[1].model.weights):
        mirrored.assign(single.numpy())  # the same start, whatever the initialisers did
    start = [v.numpy() for v in loops[1].model.weights]
    data, losses = loops[1].batches(), []
    for _ in range(2):
        batch = next(data)
        losses.append([loops[n].train_step(batch)["loss"] for n in (1, 2)])
    weights = {n: [v.numpy() for v in loop.model.weights] for n, loop in loops.items()}
    return {"replicas": loops[2].strategy.num_replicas_in_sync, "losses": losses,
            "moved": _max_difference(weights[1], start),
            "difference": _max_difference(weights[1], weights[2]),
            "iterations": [int(loops[n].optimizer.iterations.numpy()) for n in (1, 2)]}


def test_two_replicas_take_the_step_one_replica_takes_on_the_global_batch(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, __file__, "replicas", str(tmp_path)], capture_output=True, text=True,
                          timeout=300, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2 and report["iterations"] == [2, 2]
    for single, mirrored in report["losses"]:
        assert mirrored == pytest.approx(single, rel=1e-5)
    assert report["moved"] > 1e-3 and report["difference"] < 1e-5, report


def test_a_batch_the_replicas_cannot_share_is_a_config_error_naming_the_key(tf, tmp_path):
    loop = _toy_loop(tmp_path)
    loop.setup()
    loop.strategy = SimpleNamespace(num_replicas_in_sync=3)  # only the replica count is read first
    with pytest.raises(ConfigError) as err:
        loop.build_training()
    assert err.value.key == "model.tiers.smoke.recipe.batch_size" and "3 replicas" in str(err.value)


# --------------------------------------------------------------------------- checkpoints
def test_a_checkpoint_of_another_variant_is_a_data_error_naming_file_and_variable(tf, tmp_path):
    wide = _toy_loop(tmp_path, "wide")
    wide.setup()
    wide.build_training()
    ckpt.save(tmp_path, wide.state())
    small = _toy_loop(tmp_path, "small")
    small.setup()
    small.build_training()
    before = [v.numpy() for v in small.model.weights]
    with pytest.raises(DataError, match=str(tmp_path / ckpt.LATEST)) as err:
        small.load_weights(tmp_path / ckpt.LATEST)  # checkpoint=<latest.pt> of another variant
    assert small.model.weights[0].path in str(err.value) and "(3, 4)" in str(err.value)
    assert _max_difference(before, [v.numpy() for v in small.model.weights]) == 0  # nothing half-assigned
    # as the job's own latest.pt it is moved aside, the reason recorded, and the job starts over
    small.resume()
    discarded = small.result.environment["discarded_checkpoint"]
    assert str(tmp_path / ckpt.LATEST) in discarded["reason"] and "(3, 4)" in discarded["reason"]
    assert Path(discarded["path"]).is_file() and not (tmp_path / ckpt.LATEST).exists()
    assert small.step == 0 and small.result.restarts == 0
    assert _max_difference(before, [v.numpy() for v in small.model.weights]) == 0  # a fresh start


def test_a_tf_job_resumed_mid_run_ends_where_an_uninterrupted_run_ends(tf, results_dir, shapes_root, tiny, tmp_path):
    common = _common(results_dir, shapes_root, tiny) + ["tier.compare_with=none", *NO_AUGMENTATION]
    (first,) = run_one(common, echo=lambda _: None).jobs
    assert first["verdict"] == "MEASURED", first["failure_message"]
    assert first["steps_done"] == 4 and "bbox_AP" in first["metrics"]
    (path,) = _checkpoints(results_dir)
    state = ckpt.load_latest(path.parent)
    assert state["step"] == 4 and "tf_model" in state and "tf_optimizer" in state
    # the finished job's directory is reset on a re-run; resume a longer schedule in place
    cfg = compose_config(common + ["model.tiers.smoke.recipe.steps=6"])
    resumed = _yolo_loop(cfg, path.parent)
    second = resumed.run()
    assert second.steps_done == 6 and second.restarts == 1
    assert [p["step"] for p in second.curve if "loss" in p] == [1, 2, 3, 4, 5, 6]
    assert second.images_seen == 6 * cfg.model.tiers.smoke.recipe.batch_size
    assert second.times.train_s > 0 and second.environment["tf_strategy"] == "_DefaultDistributionStrategy"
    straight = _yolo_loop(cfg, tmp_path / "straight")
    assert straight.run().restarts == 0
    assert int(resumed.optimizer.iterations) == int(straight.optimizer.iterations) == 6
    difference = _max_difference([v.numpy() for v in resumed.model.weights],
                                 [v.numpy() for v in straight.model.weights])
    # measured: 0.0 with the restore, 8e-3 with the optimizer's variables left unrestored
    assert difference < 1e-5, difference


# --------------------------------------------------------------------------- early abort, NaN guard
def test_far_below_the_reference_curve_stops_with_early_abort(tf, results_dir, shapes_root, tiny):
    overrides = _common(results_dir, shapes_root, tiny) + ["model.tiers.smoke.recipe.steps=8",
                                                           "tier.early_check.tolerance=0.01",
                                                           # no spread: the relative tolerance applies
                                                           "model.tiers.smoke.framework_references.tensorflow"
                                                           ".curve_spread={}"]
    (row,) = run_one(overrides, echo=lambda _: None).jobs
    assert row["verdict"] == "EARLY_ABORT"
    assert row["steps_done"] == 2 and row["early_check"]["aborted"]


def test_a_nan_loss_stops_the_job_as_a_training_numerical_error(tf, monkeypatch, results_dir, shapes_root, tiny):
    from zoo_models.yolo.tf_task import YoloTfTask

    original, calls = YoloTfTask.training_step, tf.Variable(0)

    def nan_from_the_second_step(self: Any, model: Any, arrays: dict, training: bool = True) -> dict:
        out = original(self, model, arrays, training)
        calls.assign_add(1)  # a variable, not a Python counter: the step is traced once
        return {**out, "loss": tf.where(calls >= 2, float("nan"), out["loss"])}

    monkeypatch.setattr(YoloTfTask, "training_step", nan_from_the_second_step)
    (row,) = run_one(_common(results_dir, shapes_root, tiny) + ["tier.compare_with=none"], echo=lambda _: None).jobs
    assert row["verdict"] == "ERROR"
    assert (row["failure_stage"], row["failure_impact"]) == ("training", "numerical error")
    assert "NumericalError" in row["failure_message"] and "at step 2" in row["failure_message"]


@pytest.mark.slow
def test_a_diverging_loss_is_a_numerical_error(tf, results_dir, shapes_root, tiny):
    overrides = _common(results_dir, shapes_root, tiny) + ["tier.compare_with=none",
                                                           "model.tiers.smoke.recipe.lr=1e30"]
    (row,) = run_one(overrides, echo=lambda _: None).jobs
    assert row["verdict"] == "ERROR"
    assert (row["failure_stage"], row["failure_impact"]) == ("training", "numerical error")


@pytest.mark.slow
def test_tensorflow_smoke_tier_learns_and_shuffled_labels_do_not_pass(tf, results_dir):
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


# --------------------------------------------------------------------------- references
def test_a_tensorflow_job_compares_with_the_tensorflow_reference():
    from replicate.config.selection import chosen_reference
    from replicate.verdict import target_for

    tf_cfg = compose_config(["model=yolov3", "framework=tensorflow"])
    torch_cfg = compose_config(["model=yolov3"])
    recorded = torch_cfg.model.tiers.smoke.framework_references.tensorflow
    assert chosen_reference(tf_cfg) == recorded and chosen_reference(torch_cfg) == torch_cfg.model.tiers.smoke.reference
    assert "framework=tensorflow" in recorded.source
    assert torch_cfg.model.tiers.smoke.reference.value != recorded.value
    # selection does not rewrite the config: the TF job's config still holds both references
    assert tf_cfg.model.tiers.smoke.reference == torch_cfg.model.tiers.smoke.reference
    assert target_for(tf_cfg, "tiny").value == recorded.value != target_for(torch_cfg, "tiny").value


def test_a_reference_for_an_undeclared_framework_is_refused():
    from replicate.config.validate import validate

    cfg = compose_config(["model=yolov3"])
    with open_dict(cfg):
        cfg.model.tiers.smoke.framework_references["jax"] = cfg.model.tiers.smoke.reference
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert err.value.key == "model.tiers.smoke.framework_references"


if __name__ == "__main__" and sys.argv[1:2] == ["replicas"]:
    print(json.dumps(_one_and_two_replicas(Path(sys.argv[2]))))
