"""A job killed after any checkpoint and run again ends bit-identical to the uninterrupted job,
for every smoke model: weights, metrics and curve. Augmentation stays on (flip, darknet jitter and
colour, pix2pix's jitter): its random stream is part of the checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from replicate.config.compose import compose_config
from replicate.jobs import JobResult
from replicate.resolved import make_spec
from replicate.runner import base_loop
from replicate.runner import checkpoint as ckpt
from replicate.runner.base_loop import RunContext
from replicate.runner.worker import build_loop

MODELS = [["model=faster_rcnn"], ["model=retinanet"], ["model=mask_rcnn"], ["model=centernet"],
          ["model=yolov3"], ["model=yolov4"], ["model=pix2pix"],
          pytest.param(["model=yolov3", "framework=tensorflow"], id="yolov3-tensorflow",
                       marks=pytest.mark.slow)]   # 40 s; tests/runner/test_tf_loop.py resumes a TF job mid-run


class Killed(BaseException):
    """Stands for SIGKILL right after a checkpoint reached the disk (nothing after it runs)."""


def _loop(overrides: list[str], directory: Path):
    cfg = compose_config(overrides)
    spec = make_spec(cfg, None)
    ctx = RunContext(checkpoint_dir=directory, progress=False)
    return build_loop(spec, cfg, ctx, JobResult(spec.job_id))


def _weights(loop) -> list[torch.Tensor]:
    model = loop.model
    if hasattr(model, "state_dict"):
        return [t.detach().clone() for t in model.state_dict().values()]
    return [torch.from_numpy(v.numpy().copy()) for v in model.weights]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m[0].removeprefix("model=") if isinstance(m, list) else m)
def test_a_job_killed_after_a_checkpoint_resumes_to_the_uninterrupted_result(model, results_dir, shapes_root, tiny,
                                                                             tmp_path, monkeypatch):
    overrides = [*model, "scheduler=inline", f"results_dir={results_dir}", f"datasets.shapes.root={shapes_root}",
                 *tiny, "model.tiers.smoke.recipe.steps=6", "tier.compare_with=none", "+tier.early_check.enabled=false"]
    whole = _loop(overrides, tmp_path / "whole")
    expected = whole.run()
    assert expected.failure is None and expected.steps_done == 6

    real_save = ckpt.save
    for kill_at in (2, 4):
        directory = tmp_path / f"killed-at-{kill_at}"

        def save_then_die(where, state, kill_at=kill_at):
            path = real_save(where, state)
            if state["step"] == kill_at:
                raise Killed
            return path

        monkeypatch.setattr(base_loop.ckpt, "save", save_then_die)
        with pytest.raises(Killed):
            _loop(overrides, directory).run()
        monkeypatch.setattr(base_loop.ckpt, "save", real_save)
        again = _loop(overrides, directory)
        result = again.run()
        assert result.restarts == 1 and result.steps_done == 6
        assert result.metrics == expected.metrics, f"killed at step {kill_at}"
        assert [p.get("loss") for p in result.curve] == [p.get("loss") for p in expected.curve]
        assert all(torch.equal(a, b) for a, b in zip(_weights(again), _weights(whole)))
