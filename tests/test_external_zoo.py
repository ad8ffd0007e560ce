"""A lab's own zoo, end to end: examples/tiny_zoo is installed by pip (into a folder of its own,
as a lab installs its package beside the benchmark) and its model runs through the real CLI,
found by its entry point alone: no file of the harness names it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "tiny_zoo"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """(environment with the example zoo installed, a results folder)."""
    work = tmp_path_factory.mktemp("lab")
    source = work / "tiny_zoo"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    site = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(source)], check=True, capture_output=True)
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONPATH": str(site)}
    return env, work / "results"


def _replicate(lab, *args: str) -> subprocess.CompletedProcess:
    env, results = lab
    where = [] if args[0] == "models" else [f"results_dir={results}"]   # `models` reads no store
    return subprocess.run([sys.executable, "-m", "replicate.cli", *args, *where], capture_output=True, text=True,
                          env=env, cwd=results.parent, timeout=900)


def test_the_installed_zoo_is_listed_with_its_version(lab):
    proc = _replicate(lab, "models", "--json")
    assert proc.returncode == 0, proc.stderr
    row = next(r for r in json.loads(proc.stdout) if r["name"] == "tiny_fcos")
    assert row["zoo"] == {"name": "tiny-zoo", "distribution": "tiny-zoo", "version": "0.1.0"}
    assert row["primary_claim"]["value"] == 39.2 and row["trainable_params"] == 32269600


def test_its_model_passes_check_run_and_a_suite(lab):
    check = _replicate(lab, "check", "model=tiny_fcos", "--json")
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
    run = _replicate(lab, "run", "model=tiny_fcos", "logger=none", "suite_id=lab-run")
    assert run.returncode == 0 and "tiny_fcos-smoke-s0" in run.stdout and ": PASS bbox_AP=" in run.stdout, \
        run.stdout[-3000:] + run.stderr[-2000:]
    suite = _replicate(lab, "suite", "logger=none", "suite_id=lab-night",
                       "suite.entries=[{model: tiny_fcos, tier: smoke, hardware: cpu, seeds: [1]}]")
    assert suite.returncode == 0 and "verdicts (1 model group): 1 PASS" in suite.stdout, \
        suite.stdout[-3000:] + suite.stderr[-2000:]


def test_a_misspelt_model_names_the_zoos_models_among_the_allowed(lab):
    proc = _replicate(lab, "run", "model=tiny_fcoss")
    assert proc.returncode == 2 and "tiny_fcos" in proc.stderr and "yolov4" in proc.stderr


@pytest.mark.slow
def test_the_harness_defects_apply_to_its_model(lab):
    """A defect of any recipe (the harness's catalogue) is injected into the lab's model and caught."""
    proc = _replicate(lab, "selftest", "model=tiny_fcos", "defect=lr_10x", "logger=none", "--json")
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    rows = json.loads(proc.stdout)["rows"]
    assert any(r["defect"] == "lr_10x" and r["model"] == "tiny_fcos" and r["flagged"] for r in rows), rows
