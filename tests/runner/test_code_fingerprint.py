"""What code computed a job: the model's own files (its Task's module and what it imports from its
zoo, with the family's data files), the harness, the packages; and a suite re-run keyed by it, so
an edited model runs again while an unchanged one is skipped."""

from __future__ import annotations

import shutil
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from replicate.harness import run_suite
from replicate.runner import code_fingerprint as fingerprint
from replicate.zoo import registry
from replicate.zoo.registry import get_task_class, implementations

FILES = {
    "__init__.py": "",
    "model.py": """
        from .layers import block

        def build():
            from zoo_pkg.loss import loss   # a function-level import counts too
            return block, loss
        """,
    "layers.py": "block = 1\n",
    "loss.py": "loss = 2\n",
    "unused.py": "other_model = 3\n",
    "family/__init__.py": "",
    "family/head.py": "head = 4\n",
    "family/cfg/net.cfg": "[net]\nwidth=64\n",
}


def _write_zoo(root: Path, name: str, extra_import: str = "") -> None:
    for rel, text in FILES.items():
        path = root / name / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        body = textwrap.dedent(text).replace("zoo_pkg", name)
        if rel == "model.py" and extra_import:
            body = extra_import + "\n" + body
        path.write_text(body)


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    """A lab's zoo package on sys.path, under a name no other test uses."""
    name = f"labzoo_{uuid.uuid4().hex[:8]}"
    _write_zoo(tmp_path / "site", name, extra_import=f"from {name}.family import head")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    fingerprint.forget()
    yield name, tmp_path / "site" / name
    fingerprint.forget()
    for module in [m for m in sys.modules if m.startswith(name)]:
        del sys.modules[module]


def _model_hash(module: str) -> str:
    fingerprint.forget()
    return fingerprint.code_fingerprint(module)["model_code"]


def test_the_model_code_is_its_module_and_what_it_imports_from_its_zoo(zoo):
    name, folder = zoo
    files = fingerprint.model_code_files(f"{name}.model")
    assert set(files) == {f"{name}.model", f"{name}.layers", f"{name}.loss", name, f"{name}.family",
                          f"{name}.family.head", f"{name}.family/cfg/net.cfg"}
    before = _model_hash(f"{name}.model")
    edits = [("layers.py", "block = 10\n"), ("loss.py", "loss = 20\n"), ("family/cfg/net.cfg", "[net]\nwidth=65\n")]
    for rel, edit in edits:
        original = (folder / rel).read_text()
        (folder / rel).write_text(edit)
        assert _model_hash(f"{name}.model") != before, f"an edit of {rel} went unseen"
        (folder / rel).write_text(original)
    assert _model_hash(f"{name}.model") == before
    (folder / "unused.py").write_text("other_model = 30\n")   # another model's file of the same zoo
    assert _model_hash(f"{name}.model") == before


def test_the_same_code_hashes_the_same_wherever_it_is_installed(zoo, tmp_path, monkeypatch):
    name, folder = zoo
    here = _model_hash(f"{name}.model")
    for module in [m for m in sys.modules if m.startswith(name)]:
        del sys.modules[module]
    moved = tmp_path / "elsewhere"
    shutil.copytree(folder, moved / name)
    monkeypatch.syspath_prepend(str(moved))
    assert fingerprint.model_code_files(f"{name}.model")[f"{name}.layers"].is_relative_to(moved)
    assert _model_hash(f"{name}.model") == here


@pytest.mark.parametrize("model, framework", implementations())
def test_every_implementation_hashes_its_own_files_and_not_the_others(model, framework):
    module = get_task_class(model, framework).__module__
    files = fingerprint.model_code_files(module)
    assert module in files
    assert not any(label.startswith("zoo_models.evaluation_weights") for label in files)
    if model in ("yolov3", "yolov4"):
        assert "zoo_models.yolo.loss" in files
        assert f"zoo_models.darknet/cfg/{model}.cfg" in files
    else:
        assert not any(label.startswith(("zoo_models.yolo", "zoo_models.darknet")) for label in files)
    assert all(label.startswith("zoo_models") for label in files)
    harness = fingerprint.harness_files()
    # the Task interface is the harness's (replicate/zoo/task.py): hashed with the harness, not the model
    assert "verdict.py" in harness and "zoo/task.py" in harness and "replicate.zoo.task" not in files


def test_an_edited_model_runs_again_in_a_re_run_and_an_unchanged_one_is_skipped(
        results_dir, shapes_root, tiny, tmp_path, monkeypatch):
    """The lab edits yolov4 (here: its Task subclassed in a file of its own, registered as yolov4)
    and re-runs the same suite id: that job runs again; the unchanged faster_rcnn job does not."""
    real = get_task_class("yolov4")
    site = tmp_path / "edited"
    module = f"edited_yolo_{uuid.uuid4().hex[:8]}"
    (site / module).mkdir(parents=True)
    (site / module / "__init__.py").write_text(
        f"from {real.__module__} import {real.__name__}\n\n\nclass EditedYolo({real.__name__}):\n    pass\n")
    monkeypatch.syspath_prepend(str(site))
    edited = __import__(module).EditedYolo
    monkeypatch.setitem(registry._REGISTRY, ("yolov4", "torch"), edited)
    fingerprint.forget()
    entries = ("suite.entries=[{model:yolov4,tier:smoke,hardware:cpu,seeds:[0]},"
               "{model:centernet,tier:smoke,hardware:cpu,seeds:[0]}]")
    common = [entries, "suite_id=edited", "scheduler=inline", f"results_dir={results_dir}",
              f"datasets.shapes.root={shapes_root}", *tiny, "tier.compare_with=none"]
    first = run_suite(common, echo=lambda _: None)
    assert len(first.jobs) == 2 and not first.skipped
    recorded = {r["model"]: r["environment"] for r in first.jobs}
    assert all(recorded[m]["model_code"] and recorded[m]["harness_code"] for m in recorded)

    lines: list[str] = []
    assert sorted(run_suite(common, echo=lines.append).skipped) == sorted(r["job_id"] for r in first.jobs)   # unchanged

    (site / module / "__init__.py").write_text((site / module / "__init__.py").read_text() + "\n# the lab's fix\n")
    fingerprint.forget()
    lines.clear()
    again = run_suite(common, echo=lines.append)
    yolo_id = next(r["job_id"] for r in first.jobs if r["model"] == "yolov4")
    assert yolo_id not in again.skipped and len(again.skipped) == 1
    assert f"job {yolo_id}: model code changed since its stored result: running it again" in lines
    rerun = next(r for r in again.jobs if r["model"] == "yolov4")
    assert rerun["environment"]["model_code"] != recorded["yolov4"]["model_code"]
    assert rerun["environment"]["harness_code"] == recorded["yolov4"]["harness_code"]


def test_what_changed_names_the_code_that_changed_even_for_a_job_that_never_started():
    from replicate.history import unrecorded, what_changed

    code = {"model_code": "a" * 16, "harness_code": "b" * 16, "packages_hash": "c" * 16}
    before = {"job_id": "j-s0", "environment": {"python": "3.11.7", "torch": "2.14.1", **code}, "config": {"x": 1}}
    after = {"job_id": "j-s0", "environment": {**code, "model_code": "d" * 16}, "config": {"x": 1}}
    changes = what_changed(before, after)
    assert [(c.section, c.key, c.before, c.after) for c in changes] == [("code", "model_code", "a" * 16, "d" * 16)]
    assert unrecorded(before, after) == ["environment of job j-s0"]   # the worker's part was not recorded
