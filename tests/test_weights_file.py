"""The weights a job loads: an eval tier finds its released checkpoint under $ZOO_DATA_ROOT (never
downloaded), the file is checked against the hash published with it before it is scored, and the
job records which file (by sha256) it loaded."""

from __future__ import annotations

import hashlib

import pytest

from replicate.config.compose import compose_config
from replicate.errors import DataError
from replicate.harness import preflight_weights
from replicate.resolved import resolve_job
from replicate.weights_file import sha256_of, verify, weights_for

RELEASED = "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"   # models/zoo_models/conf/model/faster_rcnn.yaml, tier eval


def _cfg(*overrides):
    return compose_config(["model=faster_rcnn", *overrides])


def test_an_eval_tier_finds_its_released_file_under_the_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_DATA_ROOT", str(tmp_path))
    weights = weights_for(_cfg("tier=eval"))
    assert weights.path == tmp_path / "checkpoints" / RELEASED
    assert weights.published_prefix == "258fb6c6" and "torchvision" in weights.source
    for name in (f"mine/{RELEASED}", "finetuned.pth"):   # a given checkpoint must exist (checked at compose)
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"w")
    given = weights_for(_cfg("tier=eval", f"checkpoint={tmp_path / 'mine' / RELEASED}"))
    assert given.path == tmp_path / "mine" / RELEASED and given.published_prefix == "258fb6c6"   # still that file
    other = weights_for(_cfg("tier=eval", f"checkpoint={tmp_path / 'finetuned.pth'}"))
    assert other.published_prefix is None and not other.released
    assert weights_for(_cfg("tier=smoke")) is None   # a training tier starts afresh


def test_a_file_that_is_not_the_published_one_is_refused_naming_both_hashes(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_DATA_ROOT", str(tmp_path))
    path = tmp_path / "checkpoints" / RELEASED
    path.parent.mkdir()
    path.write_bytes(b"re-saved weights")
    with pytest.raises(DataError, match="does not start with 258fb6c6, the hash published with it") as err:
        verify(weights_for(_cfg("tier=eval")))
    assert str(path) in str(err.value)
    digest = hashlib.sha256(b"re-saved weights").hexdigest()
    ok = weights_for(_cfg("tier=eval", f"model.tiers.eval.released.sha256_prefix={digest[:8]}"))
    assert verify(ok) == digest == sha256_of(path)


def test_a_missing_released_file_stops_a_run_and_makes_a_suites_job_infra(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_DATA_ROOT", str(tmp_path))
    job = resolve_job(_cfg("tier=eval", "tier.compare_with=none"), None)
    with pytest.raises(DataError, match="weights file not found: place the released file from torchvision"):
        preflight_weights([job], echo=lambda _: None)
    missing = preflight_weights([job], echo=lambda _: None, keep_going=True)
    assert str(tmp_path / "checkpoints" / RELEASED) in missing[job.job_id]


def test_a_job_records_the_file_it_loaded_by_its_hash(results_dir, tiny):
    """Start from another run's checkpoint (checkpoint=): the environment names it and its sha256."""
    from replicate.runner.worker import checkpoint_dir, run_job

    first = resolve_job(compose_config(["model=yolov4", f"results_dir={results_dir}", *tiny,
                                        "tier.compare_with=none"]), None)
    assert run_job(first, progress=False).failure is None
    saved = checkpoint_dir(first.cfg, first.job_id) / "latest.pt"
    again = resolve_job(compose_config(["model=yolov4", f"results_dir={results_dir / 'again'}", *tiny,
                                        "tier.compare_with=none", f"checkpoint={saved}"]), None)
    result = run_job(again, progress=False)
    assert result.failure is None, result.failure
    assert result.environment["weights"] == {"path": str(saved), "sha256": sha256_of(saved),
                                             "published_prefix": None, "source": None}
