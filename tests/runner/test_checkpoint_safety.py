"""Checkpoints are data, never code; an unreadable one never wedges a job; a failed write leaves
nothing behind and says which file."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from replicate.config.compose import compose_config
from replicate.errors import DataError, StorageError
from replicate.failures import classify
from replicate.harness import open_store, run_one
from replicate.resolved import make_spec
from replicate.runner import checkpoint as ckpt
from replicate.runner.worker import checkpoint_dir

ROOT = Path(__file__).resolve().parents[2]


class _RunsCode:
    """Unpickling this touches a marker file: what a crafted checkpoint could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _crafted(path: Path, marker: Path) -> Path:
    torch.save({"model": {"w": torch.zeros(1)}, "payload": _RunsCode(marker)}, path)
    return path


def _common(results_dir: Path, shapes_root: Path, tiny: list[str]) -> list[str]:
    return ["model=yolov4", "scheduler=inline", f"results_dir={results_dir}", f"datasets.shapes.root={shapes_root}",
            *tiny, "tier.compare_with=none"]


def test_a_crafted_checkpoint_argument_is_refused_naming_it_and_runs_nothing(results_dir, shapes_root, tiny,
                                                                             tmp_path):
    marker = tmp_path / "ran"
    bad = _crafted(tmp_path / "weights.pt", marker)
    common = _common(results_dir, shapes_root, tiny)
    # Refused before anything is scheduled (replicate/entry_checks.py): exit 2, no job row.
    with pytest.raises(DataError, match="refused") as refused:
        run_one(common + [f"checkpoint={bad}"], echo=lambda _: None)
    assert str(bad) in str(refused.value)
    assert not marker.exists()
    assert open_store(compose_config(common)).jobs() == []
    torch.load(bad, weights_only=False)  # the file really runs code when loaded the unsafe way
    assert marker.exists()


def test_a_crafted_or_corrupt_latest_checkpoint_is_moved_aside_and_the_job_starts_over(results_dir, shapes_root,
                                                                                      tiny, tmp_path):
    common = _common(results_dir, shapes_root, tiny)
    (clean,) = run_one(common + ["suite_id=clean"], echo=lambda _: None).jobs
    marker = tmp_path / "ran"
    for suite, plant in (("crafted", lambda p: _crafted(p, marker)),
                         ("corrupt", lambda p: p.write_bytes(b"PK\x03\x04 not a zip archive at all")),
                         ("foreign", lambda p: torch.save({"step": 2, "weights": torch.ones(3)}, p))):
        cfg = compose_config(common + [f"suite_id={suite}"])
        directory = checkpoint_dir(cfg, make_spec(cfg, suite).job_id)
        directory.mkdir(parents=True)
        plant(directory / ckpt.LATEST)
        (row,) = run_one(common + [f"suite_id={suite}"], echo=lambda _: None).jobs
        assert row["verdict"] == "MEASURED" and row["metrics"] == clean["metrics"], suite
        discarded = row["environment"]["discarded_checkpoint"]
        assert str(directory / ckpt.LATEST) in discarded["reason"] or suite == "foreign", discarded
        assert Path(discarded["path"]).is_file() and Path(discarded["path"]).parent == directory
        assert row["restarts"] == 0
    assert not marker.exists()


def test_load_file_names_the_file_for_every_unreadable_kind(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(256))
    for path in (empty, garbage, _crafted(tmp_path / "crafted.pt", tmp_path / "ran")):
        with pytest.raises(DataError) as err:
            ckpt.load_file(path)
        assert err.value.path == str(path)


def test_a_write_that_fails_mid_file_leaves_no_temp_file_and_names_the_checkpoint(tmp_path):
    # A real failed write: the process may not write files past 64 KiB (as a full disk refuses).
    script = textwrap.dedent(f"""
        import resource, signal, sys, torch
        from pathlib import Path
        from replicate.errors import StorageError
        from replicate.runner import checkpoint as ckpt
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
        try:
            ckpt.save(Path({str(tmp_path)!r}), {{"w": torch.zeros(1_000_000)}})
        except StorageError as exc:
            print("STORAGE", exc.path)
            sys.exit(0)
        sys.exit(3)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == f"STORAGE {tmp_path / ckpt.LATEST}"
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no partial latest.pt, no temp file


def test_a_failed_write_is_an_infrastructure_failure():
    failure = classify(StorageError("/x/latest.pt", OSError(28, "No space left on device")), "training")
    assert failure.stage == "infrastructure" and "/x/latest.pt" in failure.message


def test_saves_from_two_processes_never_share_a_temp_file(tmp_path):
    names = set()
    real_replace = os.replace

    def record(src, dst):
        names.add(Path(src).name)
        real_replace(src, dst)

    import replicate.runner.checkpoint as module
    module.os.replace = record
    try:
        ckpt.save(tmp_path, {"step": 1})
        ckpt.save(tmp_path, {"step": 2})
    finally:
        module.os.replace = real_replace
    assert len(names) == 2 and ckpt.load_latest(tmp_path)["step"] == 2


def test_a_job_already_running_in_another_process_is_not_started_twice(results_dir, shapes_root, tiny):
    common = _common(results_dir, shapes_root, tiny)
    cfg = compose_config(common)
    directory = checkpoint_dir(cfg, make_spec(cfg, None).job_id)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from replicate.runner import checkpoint;"
                               f"lock = checkpoint.JobLock(Path({str(directory)!r})).__enter__();"
                               "print(lock.holder, flush=True); time.sleep(120)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "None"  # the other process holds the lock
        (row,) = run_one(common, echo=lambda _: None).jobs
        assert row["verdict"] == "INFRA" and f"process {holder.pid}" in row["failure_message"]
    finally:
        holder.kill()
        holder.wait()
    (row,) = run_one(common, echo=lambda _: None).jobs  # the kernel dropped the dead holder's lock
    assert row["verdict"] == "MEASURED"


def test_a_good_checkpoint_is_never_discarded_when_memory_runs_out_restoring_it(results_dir, shapes_root, tiny,
                                                                                  tmp_path):
    from replicate.jobs import JobResult
    from replicate.runner.base_loop import RunContext
    from replicate.runner.worker import build_loop

    cfg = compose_config(_common(results_dir, shapes_root, tiny))
    spec = make_spec(cfg, None)
    loop = build_loop(spec, cfg, RunContext(checkpoint_dir=tmp_path, progress=False), JobResult(spec.job_id))
    loop.setup()
    loop.build_training()
    ckpt.save(tmp_path, loop.state())

    def out_of_memory(state):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    loop.restore = out_of_memory
    with pytest.raises(torch.OutOfMemoryError):
        loop.resume()
    assert (tmp_path / ckpt.LATEST).is_file() and "discarded_checkpoint" not in loop.result.environment
