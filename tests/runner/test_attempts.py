"""The record of a job's attempts: a dead attempt is closed by the next at its last heartbeat,
and what it held beyond its training is billed."""

from __future__ import annotations

import time

import pytest

from replicate.runner import attempts
from replicate.runner import checkpoint as ckpt


def _heartbeat(job_dir, step: int, train_s: float, at: float) -> None:
    ckpt.write_json(job_dir / ckpt.PROGRESS, {"step": step, "train_s": train_s, "time": at})


def test_a_dead_attempt_is_closed_at_its_last_heartbeat_and_its_overhead_billed(tmp_path):
    first = attempts.begin(tmp_path)[-1]
    assert first["attempt"] == 1 and first["ended"] is None and first["host"]
    _heartbeat(tmp_path, step=7, train_s=2.0, at=first["started"] + 5.0)     # then the process dies
    history = attempts.begin(tmp_path)
    dead, second = history
    assert dead["dead"] and dead["ended"] == pytest.approx(first["started"] + 5.0) and dead["steps_done"] == 7
    assert dead["cause"] == attempts.death_cause(first)   # Ray's word on the node where there is one
    attempts.note_resumed(tmp_path, step=5, train_s=1.5)
    _heartbeat(tmp_path, step=9, train_s=2.6, at=time.time())
    history = attempts.finish(tmp_path, steps_done=9, train_s=2.6)
    assert history[-1]["cause"] == attempts.FINISHED and history[-1]["resumed_from_step"] == 5
    # held 5 s, trained 2 s of it: 3 s of setup and evaluation billed beside the training
    assert attempts.retry_overhead_s(history) == pytest.approx(3.0)
    assert attempts.held_s(history) == pytest.approx(5.0)


def test_an_attempt_that_died_before_its_first_heartbeat_ends_where_it_began(tmp_path):
    _heartbeat(tmp_path, step=3, train_s=1.0, at=time.time() - 60)    # an earlier run's heartbeat
    first = attempts.begin(tmp_path)[-1]
    dead = attempts.close_last(tmp_path, "infrastructure: crash: retries exhausted")[-1]
    assert dead["ended"] == first["started"] and dead["steps_done"] == 0 and dead["cause"].startswith("infra")
    assert attempts.retry_overhead_s([dead]) == 0.0


def test_a_torn_record_starts_a_new_one(tmp_path):
    (tmp_path / attempts.ATTEMPTS).write_text("{not json")
    assert [a["attempt"] for a in attempts.begin(tmp_path)] == [1]
