"""``replicate calibrate --evaluation-reference``: the fixed weights a smoke tier's evaluation is
held to, and what they score under every numeric variant (replicate/runner/evaluation_reference.py).

1. The smoke job is trained once (the first seed, the first variant, one thread), as a draw is.
2. Its final checkpoint becomes the weights file (the model's whole state, floats as float16),
   written to ``results/calibration/`` for the lab to place under
   ``models/zoo_models/evaluation_weights/`` (the block printed says where).
3. The weights are scored through the smoke job's evaluation on the first ``images`` evaluation
   images under each (variant, threads), each in a fresh process; the block records the first
   variant's metrics and, per metric, the tolerance the largest gap between variants implies.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

from replicate.calibrate import Draw, prepared_data, run_draw, run_within_cpus, smoke_config, variants_for
from replicate.config.selection import chosen_framework
from replicate.errors import ConfigError
from replicate.runner import evaluation_reference as reference

DEFAULT_IMAGES = 128   # of the 512 smoke evaluation images: a quarter of an evaluation's cost per job


def _child(args: dict[str, Any], env: dict[str, str], threads: int) -> dict[str, Any]:
    """One step (replicate/evaluation_reference_draw.py) in a fresh process under ``env``."""
    with tempfile.TemporaryDirectory(prefix="zoo-evalref-") as tmp:
        out = Path(tmp) / "out.json"
        child_env = {**os.environ, **env, "OMP_NUM_THREADS": str(threads)}
        proc = subprocess.run([sys.executable, "-m", "replicate.evaluation_reference_draw",
                               json.dumps({**args, "threads": threads, "out": str(out)})],
                              env=child_env, capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"evaluation reference step {args['mode']} failed (exit {proc.returncode}): {tail[0]}")
        return json.loads(out.read_text())


def calibrate_evaluation_reference(overrides: Sequence[str], variants: Sequence[str], threads: Sequence[int], *,
                                   seed: int = 0, images: int = DEFAULT_IMAGES, cpus: int = 2,
                                   echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Train, export and score; returns the block to record under ``evaluation_references``."""
    from replicate.runner.environment import git_output

    probe = smoke_config(overrides)
    framework = chosen_framework(probe)
    known = variants_for(framework)
    unknown = sorted(set(variants) - set(known))
    if unknown:
        raise ConfigError("--variants", f"{', '.join(unknown)} unknown for {framework}; allowed: {', '.join(known)}")
    if images < 1:
        raise ConfigError("--images", f"{images} must be >= 1")
    name = reference.weights_file_name(probe.model.name, framework)
    target = Path(probe.results_dir) / "calibration" / name
    asked = list(overrides)
    job_overrides = [*overrides, *prepared_data(probe, echo), "tier=smoke", "tier.compare_with=none", f"seed={seed}",
                     "logger=none"]
    with tempfile.TemporaryDirectory(prefix="zoo-evalref-train-") as tmp:
        first = Draw(seed, variants[0], 1)
        echo(f"evaluation reference {probe.model.name} ({framework}): training {first.label}")
        trained = _train_keeping_checkpoint(job_overrides, first, known[first.variant], Path(tmp))
        exported = _child({"mode": "export", "overrides": [*job_overrides, f"results_dir={tmp}"],
                           "checkpoint": str(trained), "weights": str(target)}, known[first.variant], 1)
    digest = exported["sha256"]
    echo(f"  weights: {target} (sha256 {digest[:12]}...)")
    draws = [Draw(seed, variant, int(count)) for variant in variants for count in threads]
    scored: dict[str, dict[str, float]] = {}

    def score(draw: Draw) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="zoo-evalref-score-") as scratch:
            return _child({"mode": "score", "overrides": [*job_overrides, f"results_dir={scratch}"],
                           "weights": str(target), "sha256": digest, "images": images},
                          known[draw.variant], draw.threads)

    def done(draw: Draw, measured: dict[str, Any]) -> None:
        scored[draw.label] = measured["metrics"]
        echo(f"  {draw.label}: {', '.join(f'{k} {v:.6g}' for k, v in list(measured['metrics'].items())[:3])}")

    run_within_cpus(draws, score, cpus, done)
    labels = [d.label for d in draws]
    base = scored[labels[0]]
    gaps = {metric: max(abs(scored[label][metric] - value) for label in labels) for metric, value in base.items()}
    command = " ".join(["replicate calibrate", *asked, "--evaluation-reference",
                        f"--variants {','.join(variants)}", f"--threads {','.join(str(t) for t in threads)}",
                        f"--images {images}"])
    return {
        "weights": name,
        "sha256": digest,
        "dataset_hash": exported["dataset_hash"],
        "images": images,
        "metrics": {k: float(f"{v:.10g}") for k, v in base.items()},
        "tolerance": {k: float(f"{reference.tolerance(base[k], gap):.4g}") for k, gap in gaps.items()},
        "labels": labels,
        "source": f"measured: `{command}` on {dt.date.today().isoformat()} (git "
                  f"{git_output('rev-parse', '--short', 'HEAD') or 'unknown'}, {os.cpu_count()} CPU cores); "
                  f"largest gap between variants: {max(gaps.values()) if gaps else 0:.3g}",
    }


def _train_keeping_checkpoint(overrides: Sequence[str], draw: Draw, env: dict[str, str], results_dir: Path) -> Path:
    """The smoke job trained as a calibration draw, in ``results_dir``; its final checkpoint."""
    measured = run_draw(overrides, draw, env, results_dir=results_dir)
    if measured.get("error"):
        raise RuntimeError(f"training the evaluation reference failed: {measured['error']}")
    found = sorted(results_dir.glob("checkpoints/*/latest.pt"))
    if len(found) != 1:
        raise RuntimeError(f"training the evaluation reference left {len(found)} checkpoints in {results_dir}")
    return found[0]
