"""Environment fingerprint: what a job ran on, so "what changed since the last PASS" is a diff."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "torchvision", "tensorflow-cpu", "tensorflow", "ray", "numpy")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_output(*args: str) -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _driver() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


# Environment variables that choose numeric kernels: another value is another numeric variant of
# the same job (replicate calibrate draws over them), so the fingerprint records them.
NUMERIC_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "TF_ENABLE_ONEDNN_OPTS", "OMP_NUM_THREADS")


def numeric_variant(num_threads: int | None = None) -> dict[str, Any]:
    """What decides a CPU job's floating-point path: the ATen kernel set that ran, threads, env."""
    import torch

    variant = {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
               "num_threads": num_threads or torch.get_num_threads(),
               **{name.lower(): os.environ.get(name) for name in NUMERIC_ENV}}
    tf = sys.modules.get("tensorflow")
    if tf is not None:   # a TensorFlow job: the pools it ran on (fixed once TensorFlow has run)
        variant.update(tf_intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads(),
                       tf_inter_op_threads=tf.config.threading.get_inter_op_parallelism_threads())
    return variant


def fingerprint(*, config_hash: str, dataset_hash: str | None, device: str,
                num_threads: int | None = None) -> dict[str, Any]:
    """Versions (Python, frameworks, CUDA, cuDNN, driver, Ray), accelerator, numeric variant, git
    state, hashes."""
    import torch

    env: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    env.update(numeric_variant(num_threads))
    env.update({pkg: _version(pkg) for pkg in PACKAGES})
    env["cuda"] = torch.version.cuda
    env["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    env["driver"] = _driver()
    env["accelerator"] = torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu"
    # The image has no .git (.dockerignore): its build records the commit as ZOO_GIT_COMMIT.
    env["git_commit"] = git_output("rev-parse", "HEAD") or os.environ.get("ZOO_GIT_COMMIT") or None
    status = git_output("status", "--porcelain", "--untracked-files=no")
    env["git_dirty"] = None if status is None else bool(status)
    env["config_hash"] = config_hash
    env["dataset_hash"] = dataset_hash
    return env
