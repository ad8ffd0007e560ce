"""scripts/same_numbers.py: two stores' jobs compared to the last bit (a redesign's proof that no
verdict moved); a single changed loss is found, timings are not compared."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "same_numbers.py"


def _store(path: Path, loss: float, train_s: float) -> Path:
    with sqlite3.connect(path) as db:
        db.execute("create table jobs (model, framework, tier, seed, metrics, curve)")
        db.execute("insert into jobs values (?, ?, ?, ?, ?, ?)",
                   ("yolov4", "torch", "smoke", 0, json.dumps({"bbox_AP": 18.81}),
                    json.dumps([{"step": 10, "loss": loss, "lr": 0.004, "train_s": train_s}])))
    return path


def _compare(a: Path, b: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(a), str(b)], capture_output=True, text=True)


def test_identical_jobs_pass_and_one_changed_loss_fails(tmp_path):
    before = _store(tmp_path / "a.db", 13.795438766479492, 1.0)
    same = _store(tmp_path / "b.db", 13.795438766479492, 9.0)    # another machine's timing
    moved = _store(tmp_path / "c.db", 13.79543685913086, 1.0)    # the last bits of one loss
    ok = _compare(before, same)
    assert ok.returncode == 0 and "1 of 1 identical" in ok.stdout
    bad = _compare(before, moved)
    assert bad.returncode == 1 and "yolov4/torch/smoke/s0: DIFFERENT" in bad.stdout
    missing = _compare(before, tmp_path / "missing.db")
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
