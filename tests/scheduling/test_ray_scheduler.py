"""The Ray scheduler on a real local Ray: concurrency, isolation of failures, fail-fast on
missing resources, and a killed worker that is retried and resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from replicate.cli import main
from replicate.harness import run_one, run_suite
from replicate.store.results_store import ResultStore

NO_VERDICT = ["tier.compare_with=none"]  # these tests are about scheduling, not accuracy: MEASURED


def test_gpu_profile_on_a_cpu_cluster_fails_fast_with_exit_2(ray_local, results_dir, capsys):
    began = time.monotonic()
    code = main(["run", "model=faster_rcnn", "hardware=h100x1", f"results_dir={results_dir}", *NO_VERDICT])
    err = capsys.readouterr().err
    assert code == 2
    assert "hardware=h100x1" in err and "GPU=1" in err and "accelerator_type:H100" in err
    assert time.monotonic() - began < 60


def test_tpu_resources_are_requested_as_the_tpu_resource():
    from replicate.config.compose import compose_config
    from replicate.scheduling.resources import ray_options

    cfg = compose_config(["model=yolov3", "hardware=tpu_v4_8", *NO_VERDICT])
    options = ray_options(cfg.hardware)
    assert options["num_gpus"] == 0
    assert options["resources"]["TPU"] == 4
    assert "accelerator_type:TPU-V4" in options["resources"]


def test_a_failing_job_is_recorded_and_does_not_stop_the_others(ray_local, results_dir, tiny):
    entries = ("suite.entries=[{model:faster_rcnn,tier:smoke,hardware:cpu,seeds:[0]},"
               "{model:faster_rcnn,tier:smoke,hardware:cpu,seeds:[1],overrides:['model.tiers.smoke.recipe.lr=1e12']}]")
    result = run_suite([entries, "suite_id=isolation", f"results_dir={results_dir}", *tiny, *NO_VERDICT],
                       echo=lambda _: None)
    verdicts = {row["seed"]: row for row in result.jobs}
    assert verdicts[0]["verdict"] == "MEASURED"
    assert verdicts[1]["verdict"] == "ERROR"
    assert (verdicts[1]["failure_stage"], verdicts[1]["failure_impact"]) == ("training", "numerical error")
    # Re-running the same suite id skips both finished jobs.
    again = run_suite([entries, "suite_id=isolation", f"results_dir={results_dir}", *tiny, *NO_VERDICT],
                      echo=lambda _: None)
    assert len(again.skipped) == 2


def _kill_when_checkpointed(checkpoints: Path, killed: dict) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        for job in checkpoints.glob("*"):
            if (job / "latest.pt").exists() and (job / "worker.json").exists():
                pid = json.loads((job / "worker.json").read_text())["pid"]
                progress = json.loads((job / "progress.json").read_text())
                os.kill(pid, signal.SIGKILL)
                killed.update(pid=pid, step=progress["step"])
                return
        time.sleep(0.2)


# postgresql: a real server (tests/conftest.py), in the slow run
@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def test_killed_worker_is_retried_and_resumes_from_its_checkpoint(ray_local, results_dir, tiny, database, request):
    url = request.getfixturevalue("pg_url") if database == "postgresql" else f"sqlite:///{results_dir}/zoo.db"
    killed: dict = {}
    watcher = threading.Thread(target=_kill_when_checkpointed, args=(results_dir / "checkpoints", killed))
    watcher.start()
    result = run_one(["model=faster_rcnn", f"results_dir={results_dir}", *tiny, *NO_VERDICT, f"store.url='{url}'",
                      "model.tiers.smoke.recipe.steps=30", "model.tiers.smoke.recipe.checkpoint_every=5"],
                     echo=lambda _: None)
    watcher.join()
    assert killed, "the job finished before a checkpoint could be seen"
    (row,) = result.jobs
    assert row["verdict"] == "MEASURED"
    assert row["restarts"] == 1
    assert row["steps_done"] == 30
    dead, last = row["attempts"]   # the killed worker's attempt, closed by its retry on the same node
    assert dead["dead"] and "process lost on a live node" in dead["cause"] and dead["pid"] == killed["pid"]
    assert dead["steps_done"] >= killed["step"] and last["cause"] == "finished" and not last["dead"]
    # The curve continues from the checkpoint: no step is logged twice.
    steps = [p["step"] for p in row["curve"] if "loss" in p]
    assert steps == sorted(set(steps)) and steps[-1] == 30
    store = ResultStore(url)
    assert [r["job_id"] for r in store.jobs(model="faster_rcnn")] == [row["job_id"]]   # one row per job
    store.close()


@pytest.mark.parametrize("address, said", [("127.0.0.1:1", "cannot reach 127.0.0.1:1"),
                                           ("ray://127.0.0.1:1", "cannot reach 127.0.0.1:1"),
                                           ("nohostport", "expected HOST:PORT")])
def test_an_unreachable_or_malformed_ray_address_is_one_line_exit_2_in_seconds(address, said, results_dir, tiny,
                                                                               capsys):
    """Not Ray's minutes of retries and a traceback: a closed port answers at once."""
    began = time.perf_counter()
    code = main(["run", "model=yolov4", f"scheduler.address={address}", f"results_dir={results_dir}", *tiny,
                 *NO_VERDICT])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and said in err[0] and "scheduler.address" in err[0], err
    assert time.perf_counter() - began < 30


def test_a_job_holds_as_many_cpus_as_it_runs_threads():
    """num_threads=2 on the 1-CPU cpu profile: the Ray task asks for 2 CPUs, so two such jobs
    never share 2 cores; on a machine with fewer CPUs than a job's threads it cannot fit."""
    from replicate.config.compose import compose_config
    from replicate.errors import ResourceUnavailable
    from replicate.scheduling.resources import check_fits, task_options

    one = compose_config(["model=yolov4", "tier.compare_with=none"])
    two = compose_config(["model=yolov4", "tier.compare_with=none", "num_threads=2"])
    assert task_options(one)["num_cpus"] == max(1.0, float(one.hardware.ray.num_cpus))
    assert task_options(two)["num_cpus"] == 2.0
    check_fits("cpu", task_options(two), [{"CPU": 2.0}])
    with pytest.raises(ResourceUnavailable):
        check_fits("cpu", task_options(compose_config(["model=yolov4", "num_threads=3"])), [{"CPU": 2.0}])


@pytest.mark.slow   # 20 s of two jobs one after the other
def test_queue_time_is_recorded_apart_and_the_timeout_counts_from_the_start(ray_local, results_dir, tiny):
    """Two jobs that each hold both CPUs run one after the other: the second waited for the
    first, and that wait is its queue time, not part of its wall time or cost."""
    entries = "suite.entries=[{model:yolov4,tier:smoke,hardware:cpu,seeds:[0,1]}]"
    result = run_suite([entries, "suite_id=queued", "num_threads=2", f"results_dir={results_dir}", *tiny, *NO_VERDICT],
                       echo=lambda _: None)
    first, second = sorted(result.jobs, key=lambda row: row["queue_s"])
    assert {first["verdict"], second["verdict"]} == {"MEASURED"}
    # the second could only start once the first had run: it waited at least that long
    assert second["queue_s"] >= first["queue_s"] + 0.8 * first["wall_s"] > 0
    for row in (first, second):   # the wait is not billed: wall time is the job's own parts
        parts = row["setup_s"] + row["train_s"] + row["eval_s"] + row["lost_s"]
        assert row["wall_s"] == pytest.approx(parts)


def test_a_job_no_node_ever_starts_is_infra_after_the_timeout(ray_local, results_dir, tiny):
    """With autoscaling, a job may wait for a node to appear; when none does, it is INFRA,
    saying it never started (not a hang of the model)."""
    began = time.monotonic()
    result = run_one(["model=yolov4", "hardware=h100x1", "scheduler.autoscaling=true", "scheduler.job_timeout_s=3",
                      f"results_dir={results_dir}", *tiny, *NO_VERDICT], echo=lambda _: None)
    (row,) = result.jobs
    assert row["verdict"] == "INFRA" and "queued, never started, for more than scheduler.job_timeout_s=3" in \
        row["failure_message"]
    assert row["queue_s"] >= 3 and time.monotonic() - began < 60


def test_a_stale_worker_record_is_not_taken_for_the_start(tmp_path):
    from replicate.config.compose import compose_config
    from replicate.resolved import resolve_job
    from replicate.runner.worker import checkpoint_dir
    from replicate.scheduling.deadlines import Deadline
    from replicate.scheduling.ray_scheduler import Pending

    job = resolve_job(compose_config(["model=yolov4", f"results_dir={tmp_path}", *NO_VERDICT]), None)
    entry = Pending(job, submitted=time.time(), deadline=Deadline(60, "test"))
    entry.look_for_start()
    assert entry.started is None and entry.queue_s is None           # nothing written yet
    record = checkpoint_dir(job.cfg, job.job_id) / "worker.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"pid": 1, "started": entry.submitted - 100}))   # an earlier run's
    entry.look_for_start()
    assert entry.started is None
    record.write_text(json.dumps({"pid": 1, "started": entry.submitted + 2.5}))
    entry.look_for_start()
    assert entry.queue_s == pytest.approx(2.5)


def test_a_bad_input_that_reaches_a_fresh_local_ray_is_said_in_exactly_one_line(results_dir):
    """No Ray notice before the error line (the default token-authentication notice was one)."""
    import subprocess
    import sys

    results_dir.mkdir()
    done = subprocess.run([sys.executable, "-m", "replicate.cli", "run", "model=faster_rcnn", "hardware=h100x1",
                           f"results_dir={results_dir}", *NO_VERDICT], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[2])
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]
