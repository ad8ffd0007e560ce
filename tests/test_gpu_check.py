"""The prepared GPU check (scripts/gpu_check/, run once on a machine with an NVIDIA GPU) must not
rot between the sessions that have one: its job scripts run here in their CPU mode, through the
same product paths (run_job; a one-rank process group with the data-parallel path forced on)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str, *args: str, out: Path) -> dict:
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check" / name), *args, "--out", str(out)],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return json.loads(out.read_text())


def test_the_smoke_job_script_runs_a_job_through_run_job(tmp_path):
    report = _script("smoke_on_cuda.py", "--hardware", "cpu", "--models", "yolov4", out=tmp_path / "smoke.json")
    (row,) = report["rows"]
    assert row["model"] == "yolov4" and row["failure"] is None and row["throughput"] > 0
    assert row["steps_done"] == row["steps_planned"] > 0 and not row["used_gpu"]


def test_the_process_group_script_runs_the_data_parallel_path_on_gloo(tmp_path):
    report = _script("nccl_world1.py", "--backend", "gloo", "--hardware", "cpu", out=tmp_path / "pg.json")
    assert report["failure"] is None and report["all_reduce"] == [3.0] * 4 and report["world_size"] == 1
    forced = report["forced_ddp"]   # the DDP wrap and the loss averaging, on a group of one
    assert forced["ok"] and forced["failure"] is None and forced["steps_done"] > 0


def test_the_precision_script_measures_each_eval_tier_in_fp32_and_amp(tmp_path):
    report = _script("precision_ab.py", "--dry-run", "--models", "centernet", "--images", "2",
                     out=tmp_path / "precision.json")
    fp32, amp = report["rows"]
    assert (fp32["precision"], amp["precision"]) == ("fp32", "amp") and report["images"] == fp32["images"] == 2
    assert fp32["weights"] == "random" and fp32["metric"] == "bbox_AP" and amp["images_per_s"] > 0
    # on a CPU the loop autocasts nothing, whatever the job asks: the same numbers, the same boxes
    assert fp32["ran"] == amp["ran"] == "fp32"
    assert amp["metrics"] == fp32["metrics"] and amp["delta"] == 0.0
    assert amp["detections_amp"] == amp["detections_fp32"] > 0 and amp["share_iou_095"] == 1.0
