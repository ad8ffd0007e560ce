"""Train/evaluation leakage by content: the pre-flight check, the job, and the rule's threshold."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from replicate.data.leakage import MAX_SHARED_SHARE, check_no_leak, split_overlap
from replicate.data.manifest import write_manifest
from replicate.data.shapes import ensure_shapes
from replicate.errors import SplitLeak


@pytest.fixture
def shapes(tmp_path) -> Path:
    return ensure_shapes({"root": str(tmp_path / "shapes"), "image_size": 32, "num_train": 12, "num_val": 200,
                          "max_objects": 2, "classes": ["circle", "square", "triangle"], "seed": 5})


def _data(root: Path) -> object:
    return OmegaConf.create({"name": "shapes", "root": str(root), "splits": {
        "train": {"images": "train", "annotations": "train.json", "pairs": "pairs/train"},
        "val": {"images": "val", "annotations": "val.json", "pairs": "pairs/val"}}})


def test_disjoint_splits_share_nothing(shapes):
    overlap = check_no_leak(_data(shapes), "val", "train")
    assert overlap is not None and overlap.shared == 0 and overlap.eval_files == 200 * 3   # image, pair image, label


def test_evaluating_on_the_training_split_is_a_leak(shapes):
    with pytest.raises(SplitLeak, match=r"36 of the 36 files of evaluation split 'train'.*memorisation"):
        check_no_leak(_data(shapes), "train", "train")


def test_a_renamed_copy_of_training_images_is_caught_by_content(shapes):
    """A validation folder assembled from training files under other names: the content gives it away."""
    for i, image in enumerate(sorted((shapes / "train").glob("*.png"))[:12]):
        shutil.copy(image, shapes / "val" / f"copied_{i}.png")
    write_manifest(shapes)
    with pytest.raises(SplitLeak, match="e.g. val/copied_"):
        check_no_leak(_data(shapes), "val", "train")


def test_a_stray_duplicate_is_data_not_a_leak(shapes):
    """One duplicate photo among 600 files (real datasets have a few) stays under the threshold."""
    assert 1 <= MAX_SHARED_SHARE * 600
    shutil.copy(sorted((shapes / "train").glob("*.png"))[0], shapes / "val" / "duplicate.png")
    write_manifest(shapes)
    overlap = check_no_leak(_data(shapes), "val", "train")
    assert overlap.shared == 1


def test_nothing_to_compare_when_the_manifest_lists_no_evaluation_file(shapes):
    data = _data(shapes)
    data.splits.val.images, data.splits.val.pairs = "elsewhere", None
    assert split_overlap(data, "val", "train") is None


def test_a_job_evaluating_its_training_split_is_an_evaluation_error(results_dir, shapes_root, tiny):
    """Caught after setup, before any training step is paid for."""
    from replicate.harness import run_one

    overrides = ["model=yolov4", "scheduler=inline", f"results_dir={results_dir}",
                 f"datasets.shapes.root={shapes_root}", *tiny, "tier.compare_with=none",
                 "model.tiers.smoke.eval_split=train"]
    (row,) = run_one(overrides, echo=lambda _: None).jobs
    assert row["verdict"] == "ERROR" and row["steps_done"] == 0
    assert (row["failure_stage"], row["failure_impact"]) == ("evaluation", "incorrect functionality")
    assert "SplitLeak" in row["failure_message"] and "'train'" in row["failure_message"]


def test_the_preflight_check_reports_the_leak(results_dir, shapes_root, tiny):
    from replicate.check import run_check

    common = ["model=yolov4", f"results_dir={results_dir}", f"datasets.shapes.root={shapes_root}", *tiny]
    clean = {c["check"]: c for c in run_check(common, echo=lambda _: None).checks}
    assert clean["splits"]["ok"] and "0 of" in clean["splits"]["detail"]
    leaking = {c["check"]: c for c in run_check(common + ["defect=eval_on_train_split"], echo=lambda _: None).checks}
    assert not leaking["splits"]["ok"] and "memorisation" in leaking["splits"]["detail"]
