"""A job's numbers do not depend on who runs it: every smoke implementation gives bit-identical
metrics and loss curves inline (this process) and under the local Ray (a worker process whose
environment Ray sets), because each job sets its thread pools from its plan
(replicate/runner/numeric_threads.py)."""

from __future__ import annotations

import pytest

from replicate.harness import run_suite
from replicate.tf_import import tensorflow

NO_VERDICT = ["tier.compare_with=none"]   # the same numbers are asked for, not a verdict


def _numbers(result) -> dict:
    rows = {(row["model"], row["framework"]): row for row in result.jobs}
    assert len(rows) == 8 and {row["verdict"] for row in rows.values()} == {"MEASURED"}, \
        {key: (row["verdict"], row.get("failure_message")) for key, row in rows.items()}
    tf_pools = rows["yolov3", "tensorflow"]["environment"]
    assert (tf_pools["tf_intra_op_threads"], tf_pools["tf_inter_op_threads"]) == (1, 1)   # recorded
    return {key: (row["metrics"], [p.get("loss") for p in row["curve"]],
                  row["environment"]["omp_num_threads"], row["environment"]["torch_threads"])
            for key, row in rows.items()}


def _both(results_dir, *overrides: str) -> tuple[dict, dict]:
    results_dir.mkdir()
    common = ["suite=smoke", *NO_VERDICT, *overrides]
    inline = run_suite([*common, f"results_dir={results_dir / 'inline'}", "scheduler=inline"], echo=lambda _: None)
    on_ray = run_suite([*common, f"results_dir={results_dir / 'ray'}"], echo=lambda _: None)
    return _numbers(inline), _numbers(on_ray)


def test_every_smoke_implementation_gives_the_same_numbers_inline_and_under_ray(ray_local, results_dir, tiny):
    inline, on_ray = _both(results_dir, *tiny)
    assert inline == on_ray
    assert {threads for _, _, threads, _ in inline.values()} == {"1"}   # the smoke plan's count, recorded


@pytest.mark.slow
@pytest.mark.timeout(3600)   # the smoke suite twice: about 20 minutes on 2 cores
def test_the_whole_smoke_suite_gives_the_same_numbers_inline_and_under_ray(ray_local, results_dir):
    inline, on_ray = _both(results_dir, "logger=none")
    assert inline == on_ray


def test_a_tensorflow_job_never_runs_silently_on_pools_another_count_fixed():
    """TensorFlow's pools are fixed once it has run in a process: asking for another count is an
    error naming the cause (an INFRA job), not a job that quietly runs on the old pools."""
    from replicate.errors import ResourceUnavailable

    tf = tensorflow()
    tf.constant(1.0) + 1.0   # the runtime is initialised: its pools are fixed now
    held = tf.config.threading.get_intra_op_parallelism_threads()
    assert tensorflow(held) is tf
    with pytest.raises(ResourceUnavailable, match=f"{held} intra-op thread.*asks for {held + 1}"):
        tensorflow(held + 1)
