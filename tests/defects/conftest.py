"""Build a job's Task the way the worker does (compose -> make_spec -> build_task), with and
without a defect, on the session's tiny shapes data."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Callable, Optional

import pytest

from replicate.defects import Target


@dataclass
class Job:
    """A built job: the Task whose steps run (a TensorFlow job's twin) and its config."""

    task: Any
    cfg: Any


@pytest.fixture
def build_job(tiny, results_dir, shapes_root) -> Callable[..., Job]:
    """``build_job(target, defect=None)``: the job's Task with the data prepared."""
    from replicate.config.compose import compose_config
    from replicate.resolved import make_spec
    from replicate.runner.worker import build_task

    def build(target: Target, defect: Optional[str] = None, *extra: str) -> Job:
        if target.framework == "tensorflow" and importlib.util.find_spec("tensorflow") is None:
            pytest.skip("tensorflow is not installed")
        data = [o for o in tiny if o.startswith(("datasets.", "model.tiers.smoke.input_size"))]
        cfg = compose_config([f"model={target.model}", f"framework={target.framework}", f"results_dir={results_dir}",
                              f"datasets.shapes.root={shapes_root}", *data, "logger=none", *extra,
                              *([f"defect={defect}"] if defect else [])])
        task = build_task(make_spec(cfg, None), cfg)
        task.prepare_data()
        return Job(task, cfg)

    return build
