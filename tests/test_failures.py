"""Failure classes (docs/architecture.md, "Failure classes"): a mis-classification is a defect."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from replicate.errors import DataError, NumericalError, ResourceUnavailable
from replicate.failures import classify


@pytest.mark.parametrize("exc, stage, expected", [
    (ModuleNotFoundError("No module named 'tensorflow'"), "modeling", ("environment", "crash")),
    (AttributeError("module 'torch' has no attribute 'foo'"), "environment", ("environment", "crash")),
    (DataError("/data/coco/annotations.json", "missing"), "training", ("data pipeline", "crash")),
    (NumericalError("loss is nan at step 2"), "training", ("training", "numerical error")),
    (NumericalError("metric is inf"), "evaluation", ("evaluation", "numerical error")),
    (NumericalError("loss is nan"), "modeling", ("training", "numerical error")),
    (MemoryError(), "training", ("training", "memory exhaustion")),
    (torch.OutOfMemoryError("CUDA out of memory"), "evaluation", ("evaluation", "memory exhaustion")),
    (TimeoutError("no progress for 600 s"), "training", ("training", "hang")),
    (ResourceUnavailable("hardware.count: 8 GPUs wanted, TensorFlow sees 0"), "modeling",
     ("infrastructure", "crash")),
    (ValueError("shapes (2,3) and (4,) not aligned"), "modeling", ("modeling", "crash")),
])
def test_each_exception_gets_its_stage_and_impact(exc, stage, expected):
    failure = classify(exc, stage)
    assert (failure.stage, failure.impact) == expected
    assert type(exc).__name__ in failure.message


def test_a_worker_without_the_profiles_accelerators_is_infra_not_the_models_error(results_dir, tiny):
    # the real job path on this CPU machine: an 8-GPU profile's TF job finds no GPU in TensorFlow.
    # find_spec, not importorskip: importing TF before torchvision.ops segfaults (replicate.tf_import.tensorflow)
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("tensorflow is not installed")
    from replicate.config.compose import compose_config
    from replicate.resolved import resolve_job
    from replicate.runner.worker import run_job

    cfg = compose_config(["model=yolov3", "framework=tensorflow", "hardware=a100x8", f"results_dir={results_dir}",
                          "tier.compare_with=none", *tiny])
    result = run_job(resolve_job(cfg, None), progress=False)
    assert result.infra and result.failure.stage == "infrastructure"


def test_a_gpu_job_on_a_worker_whose_torch_sees_no_gpu_is_infra_never_a_cpu_run(results_dir, shapes_root, tiny):
    """A node that advertises a GPU torch cannot see (a driver path missing in the image): the job
    run directly on such a worker (as a Ray task would be) is INFRA with the reason, not a CPU run
    billed at the GPU rate and judged as a slow model."""
    from replicate.config.compose import compose_config
    from replicate.resolved import resolve_job
    from replicate.runner.worker import run_job

    cfg = compose_config(["model=yolov4", "hardware=h100x1", f"results_dir={results_dir}",
                          f"datasets.shapes.root={shapes_root}", "tier.compare_with=none", *tiny])
    result = run_job(resolve_job(cfg, None), progress=False)
    assert result.infra and result.failure.stage == "infrastructure"
    assert "hardware=h100x1 asks for 1 GPU(s); torch on this worker sees 0" in result.failure.message
    assert result.steps_done == 0 and result.images_seen == 0   # not one CPU step was taken


def test_a_data_parallel_worker_needs_one_gpu_of_its_own_not_the_profiles_eight():
    """hardware=a100x8 on 8 workers: each worker asks for one GPU (Ray Train gives it one), not
    eight; without any it is still INFRA with the reason."""
    from replicate.config.compose import compose_config
    from replicate.errors import ResourceUnavailable
    from replicate.runner.worker import pick_device

    hardware = compose_config(["model=yolov4", "hardware=a100x8", "tier.compare_with=none"]).hardware
    with pytest.raises(ResourceUnavailable, match=r"asks for 1 GPU\(s\) per worker; torch on this worker sees 0"):
        pick_device("auto", hardware, world_size=8)
    with pytest.raises(ResourceUnavailable, match=r"asks for 8 GPU\(s\); torch"):
        pick_device("auto", hardware, world_size=1)


def test_device_cpu_with_a_gpu_profile_is_refused_before_anything_runs(capsys):
    from replicate.cli import main

    assert main(["run", "model=yolov4", "hardware=h100x1", "device=cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: device: cpu with hardware=h100x1"), err
