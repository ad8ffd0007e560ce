"""A results store with two nightly suites, written through the harness's own record path.

Each job goes through the real pieces the harness uses: the composed config
(``compose_config``), ``make_spec`` (job id, config hash), ``target_for``, ``judge_job``,
``job_record`` (cost, time-to-quality) and ``group_record`` (the seed group's verdict), into a
real SQLite ``ResultStore``.
Only the training is replaced by a deterministic, realistic learning curve.

Night 1 passes everywhere. Night 2 has two regressions, each with exactly one recorded cause:
faster_rcnn ran on torch 2.15.0 and yolov4 with ``model.tiers.smoke.recipe.lr`` halved; both score
far below their band. pix2pix is unchanged and passes again.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from replicate.config.compose import compose_config
from replicate.jobs import JobResult, Times
from replicate.records import group_record, job_record
from replicate.resolved import make_spec
from replicate.store.results_store import ResultStore
from replicate.verdict import judge_job, target_for

NIGHT1, NIGHT2 = "smoke-20261121", "smoke-20261122"
START = datetime(2026, 11, 21, 2, 0, tzinfo=timezone.utc)

# The fingerprint as replicate.runner.environment.fingerprint() records it on a CPU worker.
ENVIRONMENT = {
    "python": "3.11.7", "platform": "Linux-6.18.44-x86_64-with-glibc2.36", "torch": "2.14.1",
    "torchvision": "0.29.1", "tensorflow-cpu": None, "tensorflow": None, "ray": "2.60.0", "numpy": "2.4.6",
    "cuda": "13.0", "cudnn": 92400, "driver": None, "accelerator": "cpu", "precision": "fp32",
    "git_commit": "fd17026d86daad437a29280f5b411dac2e058130", "git_dirty": False,
    "dataset_hash": "1fe32c78db9037c112cccdd1075055ce94e56040ecdad33565d8c8d8f98737c3",
}

LR_OVERRIDE = "model.tiers.smoke.recipe.lr=0.002"   # yolov4's night-2 change (recipe lr 0.004)


@dataclass
class Night:
    """What one model does in one suite: final metric per seed, and what differs."""

    finals: dict[int, float]
    overrides: list[str] = field(default_factory=list)
    environment: dict = field(default_factory=dict)
    # ``finals`` as fractions of the reference ("value": a healthy night) or of the band's lower
    # edge ("low": a regression), so the story holds whatever the recorded reference and band are
    relative_to: str = "value"


PLAN = {
    NIGHT1: {"faster_rcnn": Night({0: 1.03, 1: 0.98}), "yolov4": Night({0: 1.02, 1: 0.99}),
             "pix2pix": Night({0: 0.995, 1: 1.002})},
    NIGHT2: {"faster_rcnn": Night({0: 0.5, 1: 0.6}, environment={"torch": "2.15.0"}, relative_to="low"),
             "yolov4": Night({0: 0.4, 1: 0.5}, overrides=[LR_OVERRIDE], relative_to="low"),
             "pix2pix": Night({0: 0.999, 1: 0.997})},
}


def learning_curve(steps: int, log_every: int, metric: str, final: float, early: float, seed: int,
                   seconds_per_step: float, settled_loss: float = 0.45) -> list[dict]:
    """Loss every ``log_every`` steps (exponential decay to ``settled_loss``, plus noise) and the
    metric at 25% and at the end, shaped like the torch loop's curve points."""
    rng = random.Random(seed)
    curve = []
    for step in range(log_every, steps + 1, log_every):
        loss = settled_loss * (1 + 4.0 * math.exp(-8.0 * step / steps) + rng.gauss(0.0, 0.02))
        curve.append({"step": step, "train_s": round(step * seconds_per_step, 3), "lr": 0.004, "loss": loss})
    for step, value in ((steps // 4, early), (steps, final)):
        curve.append({"step": step, "train_s": round(step * seconds_per_step, 3), metric: value})
    return sorted(curve, key=lambda p: (p["step"], "loss" not in p))


def _job(suite_id: str, model: str, seed: int, night: Night, day: int):
    """The stored record of one job and its JobResult (for the group verdict)."""
    cfg = compose_config([f"model={model}", f"suite_id={suite_id}", f"seed={seed}", *night.overrides])
    spec = make_spec(cfg, suite_id)
    target = target_for(cfg, spec.variant)
    tier = cfg.model.tiers.smoke
    steps, final = int(tier.recipe.steps), night.finals[seed]
    final = round(final * (target.low if night.relative_to == "low" else target.value), 6)
    reference_early = float(tier.reference.curve["0.25"])
    # Night 2's broken runs are already behind at 25%, but not enough for an early abort.
    early = reference_early * (0.8 if final < target.low or final > target.high else 1.0 + 0.05 * seed)
    train_s = 0.2 * steps
    result = JobResult(
        job_id=spec.job_id, metrics={target.metric: final},
        # the loss settles where the reference's healthy draws did: only the metric tells the nights apart
        curve=learning_curve(steps, int(tier.recipe.log_every), target.metric, final, early, seed, 0.2,
                             statistics.fmean(tier.reference.final_loss_draws)),
        times=Times(setup_s=1.5, train_s=train_s, eval_s=4.0), steps_done=steps, steps_planned=steps,
        images_seen=steps * int(tier.recipe.batch_size), throughput=5.0 * int(tier.recipe.batch_size),
        lr_scaling={"applied": False, "lr": float(tier.recipe.lr), "batch_size": int(tier.recipe.batch_size)},
        early_check={"step": steps // 4, "fraction": 0.25, "metric": early, "reference": reference_early,
                     "threshold": reference_early * 0.5, "aborted": False, "saved_train_s": 0.0},
        environment={**ENVIRONMENT, "config_hash": spec.config_hash, **night.environment})
    verdict, failure = judge_job(result, target)
    record = job_record(spec, result, verdict, failure, target, cfg.hardware)
    record["created_at"] = START + timedelta(days=day, minutes=seed)
    return record, result, target


def fill_store(store: ResultStore) -> None:
    """Write both nights (suites stamped in order, so night 2 is the latest)."""
    for day, (suite_id, models) in enumerate(PLAN.items()):
        store.upsert_suite(suite_id, "smoke", {"overrides": ["suite=smoke"], "suite": "smoke"})
        for model, night in models.items():
            triples, record, target = [], None, None
            for seed in night.finals:
                record, result, target = _job(suite_id, model, seed, night, day)
                store.save_job(record)
                triples.append((seed, result, record["verdict"]))
            store.save_group(group_record(suite_id, record, triples, target))
        store.finish_suite(suite_id)


@pytest.fixture(scope="session")
def results_root(tmp_path_factory) -> Path:
    """A results_dir whose zoo.db holds the two nights."""
    root = tmp_path_factory.mktemp("report") / "results"
    with ResultStore(f"sqlite:///{root / 'zoo.db'}") as store:
        fill_store(store)
    return root


@pytest.fixture
def store(results_root: Path):
    with ResultStore(f"sqlite:///{results_root / 'zoo.db'}") as opened:
        yield opened


@pytest.fixture
def nights():
    """The suite ids and the per-model plan, for assertions."""
    return {"night1": NIGHT1, "night2": NIGHT2, "plan": PLAN, "lr_override": LR_OVERRIDE}


@pytest.fixture(scope="session")
def night2_report(results_root: Path, tmp_path_factory) -> Path:
    """Night 2's report, written once (plots take a second or two): its index.html."""
    from replicate.report import write_report

    with ResultStore(f"sqlite:///{results_root / 'zoo.db'}") as store:
        return write_report(store, NIGHT2, tmp_path_factory.mktemp("night2") / "report")
