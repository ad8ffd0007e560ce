"""Inputs checked where they enter (replicate/entry_checks.py), through the real CLI: a bad
``checkpoint=`` file or an ``input_size`` the network cannot take is exit 2 with one line naming
it, before anything is scheduled, and the store holds no job row afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from replicate.cli import main
from replicate.config.compose import compose_config
from replicate.resolved import resolve_job
from replicate.runner.worker import build_task
from replicate.zoo.registry import get_task_class

MODEL = "model=yolov4"


@pytest.fixture
def common(results_dir, shapes_root, tiny) -> list[str]:
    return [f"results_dir={results_dir}", f"datasets.shapes.root={shapes_root}", "scheduler=inline",
            "tier.compare_with=none", *tiny]


def _own_state(common: list[str]) -> dict[str, torch.Tensor]:
    """The state dict of the model the job builds (yolov4's smoke variant at the tiny input size)."""
    cfg = compose_config([MODEL, *common])
    spec = resolve_job(cfg, None).spec
    return build_task(spec, cfg).build_model(spec.variant).state_dict()


def _job_rows(common: list[str], capsys) -> list[dict]:
    store = [o for o in common if o.startswith("results_dir=")]   # a read command takes where the store is only
    assert main(["history", "--json", *store]) == 0
    return json.loads(capsys.readouterr().out)


class RunsCode:
    """Unpickling it would call ``open(marker, "w")``: a file appearing means code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def _crafted_pickle(path: Path, state: dict) -> Path:
    torch.save({"model": state, "hook": RunsCode(path.with_name("code_ran"))}, path)
    return path


def _truncated_zip(path: Path, state: dict) -> Path:
    torch.save(state, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _text(path: Path, state: dict) -> Path:
    path.write_text("these are not weights\n")
    return path


def _wrong_keys(path: Path, state: dict) -> Path:
    torch.save({"backbone.conv1.weight": torch.zeros(3, 3)}, path)
    return path


def _wrong_shape(path: Path, state: dict) -> Path:
    key = next(k for k, v in state.items() if v.dim() == 4)
    torch.save({**state, key: torch.zeros(1, 1, 1, 1)}, path)
    return path


@pytest.mark.parametrize("make, named", [
    (_crafted_pickle, "could run code"),
    (_truncated_zip, "not a readable checkpoint"),
    (_text, "not a readable checkpoint"),
    (_wrong_keys, "is missing from the file (and"),   # the model's first key, then how many more
    (_wrong_shape, "shape [1, 1, 1, 1] in the file"),
])
def test_bad_checkpoint_exits_2_naming_the_file_and_records_no_job(make, named, common, tmp_path, capsys):
    path = make(tmp_path / "bad.pt", _own_state(common))
    assert main(["run", MODEL, f"checkpoint={path}", *common]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and named in err, err
    assert not (tmp_path / "code_ran").exists()   # the crafted pickle's code never ran
    assert _job_rows(common, capsys) == []


def test_own_state_dict_is_accepted_and_the_job_runs(common, tmp_path, capsys):
    path = tmp_path / "own.pt"
    torch.save(_own_state(common), path)
    main(["run", MODEL, f"checkpoint={path}", "--json", *common])   # input_size 64: a multiple of 32
    (job,) = json.loads(capsys.readouterr().out)["jobs"]
    assert job["failure_stage"] is None and job["environment"]["weights"]["path"] == str(path)


@pytest.mark.parametrize("command", ["run", "check"])
def test_input_size_off_the_stride_exits_2_naming_the_key(command, common, capsys):
    assert main([command, MODEL, *common, "model.tiers.smoke.input_size=33"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "model.tiers.smoke.input_size" in err and "33" in err and "multiple of 32" in err, err
    if command == "run":
        assert _job_rows(common, capsys) == []


@pytest.mark.parametrize("model, variant, multiple", [
    ("yolov3", "full", 32), ("yolov4", "full", 32), ("yolov4", "tiny", 32),   # darknet: 5 stride-2 stages
    ("centernet", "full", 32),   # ResNet trunk
    ("pix2pix", "full", 256),    # unet_256: 8 levels
    ("faster_rcnn", "full", None),   # torchvision resizes internally
])
def test_each_model_declares_its_input_size_multiple(model, variant, multiple):
    cfg = compose_config([f"model={model}"])
    assert get_task_class(model).input_size_multiple(cfg.model, variant) == multiple


TF = ["model=yolov3", "framework=tensorflow"]


def _tf_loop_checkpoint(folder: Path, common: list[str], wrong_shape: bool) -> Path:
    """A TensorFlow-loop checkpoint of the job's own model (one array of another shape if asked),
    in the loop's layout: ``latest.pt`` with the step and the model's arrays in order."""
    cfg = compose_config([*TF, *common])
    spec = resolve_job(cfg, None).spec
    arrays = [torch.from_numpy(w.numpy()) for w in build_task(spec, cfg).build_model(spec.variant).weights]
    if wrong_shape:
        arrays[0] = torch.zeros(1, 1, 1, 1)
    folder.mkdir()
    torch.save({"step": 4, "tf_model": arrays}, folder / "latest.pt")
    return folder / "latest.pt"


@pytest.mark.parametrize("make, named", [
    (lambda folder, common: _text(folder / "latest.pt", {}), "not a readable checkpoint"),
    (lambda folder, common: _wrong_keys(folder / "torch.pt", {}), "not a TensorFlow-loop checkpoint"),
    (lambda folder, common: _tf_loop_checkpoint(folder / "other", common, wrong_shape=True),
     "the checkpoint's array (1, 1, 1, 1)"),
])
def test_a_tensorflow_job_s_bad_checkpoint_exits_2_naming_the_file(make, named, common, tmp_path, capsys):
    path = make(tmp_path, common)
    assert main(["run", *TF, f"checkpoint={path}", *common]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and named in err, err
    assert _job_rows(common, capsys) == []


def test_a_tensorflow_job_s_own_loop_checkpoint_is_accepted(common, tmp_path, capsys):
    path = _tf_loop_checkpoint(tmp_path / "own", common, wrong_shape=False)
    main(["run", *TF, f"checkpoint={path}", "--json", *common])
    (job,) = json.loads(capsys.readouterr().out)["jobs"]
    assert job["failure_stage"] is None and job["environment"]["weights"]["path"] == str(path)
