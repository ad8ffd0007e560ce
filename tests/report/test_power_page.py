"""The report's "benchmark power" page: written when a suite has selftest rows, linked from the
index, one row per defect (defect x verdict) and per clean control; absent otherwise."""

from __future__ import annotations

import re

import pytest

from replicate.report import write_report
from replicate.store.results_store import ResultStore

SUITE = "selftest-20261124"


def _job(job_id: str, verdict: str, value: float, defect=None) -> dict:
    return {"job_id": job_id, "suite_id": SUITE, "model": "yolov4", "variant": "tiny", "framework": "torch",
            "tier": "smoke", "hardware": "cpu", "seed": 1000, "verdict": verdict, "metric_name": "bbox_AP",
            "metric_value": value, "wall_s": 120.0 if defect is None else 33.0,
            "compared_with": {"kind": "reference", "value": 11.6, "low": 10.0, "high": 13.2},
            "config": {"defect": defect}}


@pytest.fixture
def store(tmp_path):
    with ResultStore(f"sqlite:///{tmp_path / 'zoo.db'}") as opened:
        opened.upsert_suite(SUITE, "selftest", {})
        opened.save_job(_job("control", "PASS", 11.9))
        opened.save_job(_job("injected", "EARLY_ABORT", 0.4, "lr_10x"))
        opened.save_job(_job("missed", "PASS", 11.2, "<script>alert(1)</script>"))
        opened.save_selftest(SUITE, [
            {"role": "control", "model": "yolov4", "framework": "torch", "job_id": "control", "verdict": "PASS",
             "flagged": False, "preflight": {"ok": True, "failed": [], "seconds": 3.0}},
            {"role": "defect", "defect": "lr_10x", "model": "yolov4", "framework": "torch", "stage": "training",
             "defect_type": "hyperparameter", "description": "learning rate 10x the recipe's", "job_id": "injected",
             "verdict": "EARLY_ABORT", "flagged": True, "caught_at": "25% check", "cost_share": 0.275,
             "preflight": {"ok": True, "failed": [], "seconds": 3.0, "caught_by": []}},
            {"role": "defect", "defect": "<script>alert(1)</script>", "model": "yolov4", "framework": "torch",
             "stage": "evaluation", "defect_type": "evaluation", "job_id": "missed", "verdict": "PASS",
             "flagged": False, "caught_at": "missed", "preflight": {"ok": True, "failed": [], "caught_by": []}},
            {"role": "defect", "defect": "box_regression_loss_dropped", "model": "faster_rcnn",
             "framework": "torch", "stage": "training", "defect_type": "training procedure", "flagged": True,
             "caught_at": "pre-flight", "cost_share": 0.03,
             "preflight": {"ok": False, "failed": ["gradients"], "caught_by": ["gradients"], "detail": "none reach"}},
        ])
        yield opened


def test_power_page_shows_each_defect_where_it_was_caught_and_the_controls(store, tmp_path):
    index = write_report(store, SUITE, tmp_path / "report")
    page = (index.parent / "power.html").read_text()
    assert 'href="power.html"' in index.read_text()
    rows = re.findall(r'<tr class="defect-row" data-defect="([^"]*)" data-flagged="(yes|no)"', page)
    assert rows == [("lr_10x", "yes"), ("&lt;script&gt;alert(1)&lt;/script&gt;", "no"),
                    ("box_regression_loss_dropped", "yes")]
    assert "<script>alert" not in page   # autoescaped like every page
    assert "28%" in page and "25% check" in page and "pre-flight" in page and "gradients" in page
    assert "learning rate 10x the recipe&#39;s" in page
    assert 'class="control-row" data-model="yolov4"' in page and "v-PASS" in page
    assert "2 / 3" in page and "1 / 1" in page   # defects flagged; controls PASS


def test_a_suite_without_selftest_rows_has_no_power_page(store, tmp_path):
    store.upsert_suite("smoke-20261124", "smoke", {})
    index = write_report(store, "smoke-20261124", tmp_path / "plain")
    assert not (index.parent / "power.html").exists() and "power.html" not in index.read_text()
