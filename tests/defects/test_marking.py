"""An injected job never passes for a real one: no group verdict counts it, and every view of a
stored job (the terminal tables, W&B) names its defect."""

from __future__ import annotations

from replicate.config.compose import compose_config
from replicate.harness import SuiteResult, SuiteRun
from replicate.resolved import ResolvedJob, resolve_job


def _planned(seed: int, *extra: str) -> ResolvedJob:
    cfg = compose_config(["model=yolov4", f"seed={seed}", "suite_id=s", *extra])
    return resolve_job(cfg, "s")


def _row(job: ResolvedJob, value: float) -> dict:
    return {"job_id": job.spec.job_id, "suite_id": "s", "model": "yolov4", "variant": job.spec.variant,
            "framework": "torch", "tier": "smoke", "hardware": "cpu", "seed": job.seed, "verdict": "PASS",
            "metrics": {"bbox_AP": value}, "early_check": {}, "config": job.spec.config}


def test_a_group_verdict_never_counts_an_injected_job():
    clean, injected = _planned(0), _planned(1, "defect=lr_10x")
    out = SuiteResult("s", jobs=[_row(clean, 11.0), _row(injected, 0.5)])
    root = compose_config(["store.url=sqlite://"])
    with SuiteRun(root, "s", echo=lambda line: None) as run:
        groups = run.judge_groups([clean, injected], out)
        assert [g["seeds"] for g in groups] == [[0]] and groups[0]["mean"] == 11.0
        only_injected = SuiteResult("s", jobs=[_row(injected, 0.5)])
        assert run.judge_groups([injected], only_injected) == []


def test_tables_and_w_and_b_name_the_defect_of_a_job():
    from replicate.console import model_label
    from replicate.loggers.wandb_logger import defect_tags, run_name

    record = {"model": "yolov3", "variant": "tiny", "framework": "tensorflow", "seed": 1000,
              "config": {"defect": "keras_training_false_in_step"}}
    assert model_label(record) == "yolov3 (tensorflow) (defect keras_training_false_in_step)"
    assert run_name(record) == "yolov3-tiny-s1000-tensorflow-defect-keras_training_false_in_step"
    assert defect_tags(record) == ["defect:keras_training_false_in_step"]
    clean = {**record, "config": {"defect": None}}
    assert model_label(clean) == "yolov3 (tensorflow)" and defect_tags(clean) == []
    assert run_name(clean) == "yolov3-tiny-s1000-tensorflow"
