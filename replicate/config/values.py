"""Ranges, finiteness and paths: every value a job would otherwise reject only mid-run (an ERROR
row and exit 1 after minutes), refused before anything is scheduled (exit 2, naming the key).

The classes of bad value: out of range (a count of 0, a negative thread count, a seed numpy
cannot take), not finite (an lr of inf or nan), inconsistent (a batch larger than the data), a
path that is not a readable file, a device this machine lacks, an id unsafe in a path.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig

from replicate.config.selection import model_tier
from replicate.errors import ConfigError

SEED_MAX = 2**31 - 1        # numpy's global seeding takes < 2**32; every store keeps a signed 32-bit int
SUITE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
SUITE_ID_RULE = "1-100 characters of letters, digits, '.', '_' and '-', starting with a letter or digit"


def require(ok: bool, key: str, message: str) -> None:
    """The one check form of config validation: a ConfigError naming ``key`` unless ``ok``."""
    if not ok:
        raise ConfigError(key, message)


def _finite(value: Any, key: str) -> float:
    require(isinstance(value, (int, float)) and math.isfinite(value), key, f"{value} is not a finite number")
    return float(value)


def _positive(value: Any, key: str) -> None:
    require(_finite(value, key) > 0, key, f"{value} must be > 0")


def _optional_positive(value: Any, key: str) -> None:
    if value is not None:
        _positive(value, key)


def _at_least(value: Any, low: float, key: str) -> None:
    require(_finite(value, key) >= low, key, f"{value} must be >= {low}")


def check_seed(seed: Any, key: str) -> None:
    require(isinstance(seed, int) and 0 <= seed <= SEED_MAX, key, f"{seed} is outside [0, {SEED_MAX}]")


def check_suite_id(suite_id: Optional[str], key: str = "suite_id") -> None:
    if suite_id is not None:
        require(SUITE_ID.fullmatch(str(suite_id)) is not None, key, f"{suite_id!r}: allowed: {SUITE_ID_RULE}")


def check_results_dir(folder: Path) -> None:
    """results_dir is a writable folder, or one that can be made in an existing writable folder:
    a mistyped parent is refused rather than created (with everything the run writes in it)."""
    if folder.exists():
        require(folder.is_dir(), "results_dir", f"{str(folder)!r} is a file, not a folder")
        require(os.access(folder, os.W_OK | os.X_OK), "results_dir", f"{str(folder)!r} is not writable")
        return
    parent = folder.absolute().parent
    require(parent.is_dir(), "results_dir", f"{str(folder)!r}: its parent {str(parent)!r} is not a folder "
                                            f"(results_dir is created only inside an existing one)")
    require(os.access(parent, os.W_OK | os.X_OK), "results_dir",
            f"{str(folder)!r} cannot be created: {str(parent)!r} is not writable")


def _check_sqlite_folder(cfg: DictConfig) -> None:
    """A SQLite store's folder must exist, or be results_dir (created under its existing parent):
    the store never creates folders elsewhere."""
    url = str(cfg.store.get("url") or "")
    if not url.startswith("sqlite:///"):
        return
    database = url[len("sqlite:///"):].split("?", 1)[0]
    if database in ("", ":memory:") or database.startswith("file:"):
        return
    folder = Path(database).expanduser().absolute().parent
    results = Path(str(cfg.results_dir)).expanduser().absolute()
    require(folder.is_dir() or folder == results, "store.url",
            f"the folder {str(folder)!r} of the SQLite store does not exist (it is created only as results_dir)")


def check_store_location(cfg: DictConfig, *, local: bool = True) -> None:
    """``results_dir`` is given and, where this machine writes (``local``), a folder that is or can
    be made; a SQLite store's folder exists. Every command checks it, the read commands too."""
    require(bool(str(cfg.results_dir or "").strip()), "results_dir",
            "is empty: the store, data, checkpoints and reports would land in / and the current folder; "
            "give a folder (default: results)")
    if local:
        check_results_dir(Path(str(cfg.results_dir)).expanduser())
        _check_sqlite_folder(cfg)


def validate_values(cfg: DictConfig) -> None:
    """Check the values of the job ``cfg`` describes (its data, device, files) and the run's; every
    tier's recipe is checked with the model (validate.py calls :func:`check_recipe`)."""
    check_seed(cfg.seed, "seed")
    check_suite_id(cfg.suite_id)
    require(cfg.num_threads is None or cfg.num_threads >= 1, "num_threads", f"{cfg.num_threads} must be >= 1")
    require(cfg.workers is None or cfg.workers >= 1, "workers", f"{cfg.workers} must be >= 1")
    # A GPU profile never runs on the CPU: it would hold and be billed for GPUs it does not use.
    require(not (cfg.device == "cpu" and cfg.hardware.accelerator == "gpu"), "device",
            f"cpu with hardware={cfg.hardware.name}: the job would hold and be billed for GPUs it does not "
            f"use; use device=auto or a cpu profile")
    local = not cfg.scheduler.get("address")   # on a Ray cluster the workers' volumes and GPUs decide
    check_store_location(cfg, local=local)
    if local:
        _check_checkpoint(cfg.checkpoint)
        _check_device(cfg)
    _check_run_settings(cfg)
    if cfg.tier.name not in cfg.model.tiers:
        return  # the selection check names the missing tier
    key = f"model.tiers.{cfg.tier.name}"
    tier = model_tier(cfg)
    _positive(tier.input_size, f"{key}.input_size")
    if tier.data in cfg.datasets:
        _check_data(cfg.datasets[tier.data], tier, f"datasets.{tier.data}", key, trains=bool(cfg.tier.trains))
    _check_suite_entries(cfg)


def _check_run_settings(cfg: DictConfig) -> None:
    """The tier's schedule share, the scheduler's limits and the hardware's resource request."""
    fraction = _finite(cfg.tier.schedule_fraction, "tier.schedule_fraction")
    require(0 <= fraction <= 1 and (fraction > 0 or not cfg.tier.trains), "tier.schedule_fraction",
             f"{fraction} is outside {'(0, 1]' if cfg.tier.trains else '[0, 1]'}")
    scheduler = cfg.scheduler
    _at_least(scheduler.max_retries, 0, "scheduler.max_retries")
    _positive(scheduler.job_timeout_s, "scheduler.job_timeout_s")
    require(_finite(scheduler.deadline_margin, "scheduler.deadline_margin") >= 1, "scheduler.deadline_margin",
            f"{scheduler.deadline_margin} is below 1: a job would be cut before the time its recipe took before")
    require(_finite(scheduler.deadline_floor_s, "scheduler.deadline_floor_s") >= 0, "scheduler.deadline_floor_s",
            f"{scheduler.deadline_floor_s} is negative")
    require(int(scheduler.deadline_history) >= 1, "scheduler.deadline_history",
            f"{scheduler.deadline_history}: at least one earlier run is needed for a median")
    _optional_positive(scheduler.get("num_cpus"), "scheduler.num_cpus")
    # On a cluster every node resolves a relative folder against its own working directory: the
    # checkpoints, data and results of one suite would scatter over the nodes' disks.
    require(not scheduler.get("address") or Path(str(cfg.results_dir)).is_absolute(), "results_dir",
            f"{cfg.results_dir!r} is relative; with scheduler.address each node would resolve it on its own "
            f"disk: give the absolute path of the volume every node mounts")
    ray = cfg.hardware.ray
    _positive(ray.num_cpus, "hardware.ray.num_cpus")
    _at_least(ray.num_gpus, 0, "hardware.ray.num_gpus")
    for name, amount in ray.resources.items():
        _at_least(amount, 0, f"hardware.ray.resources.{name}")
    _optional_positive(cfg.hardware.get("expected_images_per_s"), "hardware.expected_images_per_s")
    for section in ("store", "scheduler", "logger"):
        node = cfg.get(section)
        target = node.get("_target_") if isinstance(node, DictConfig) else None
        # Building a config node calls its _target_: only the product's own classes, never a
        # callable a config or an override names (os.system, subprocess.run, ...).
        require(target is None or str(target).startswith("replicate."), f"{section}._target_",
                 f"{target!r}: only classes of the replicate package are built from a config")


def check_recipe(recipe: Any, key: str) -> None:
    """Every number of a training recipe: positive counts, finite rates, probabilities in range."""
    _positive(recipe.lr, f"{key}.lr")
    require(0 <= _finite(recipe.momentum, f"{key}.momentum") < 1, f"{key}.momentum",
             f"{recipe.momentum} is outside [0, 1)")
    _at_least(recipe.weight_decay, 0, f"{key}.weight_decay")
    for i, beta in enumerate(recipe.betas):
        require(0 <= _finite(beta, f"{key}.betas[{i}]") < 1, f"{key}.betas[{i}]", f"{beta} is outside [0, 1)")
    _positive(recipe.gamma, f"{key}.gamma")
    _at_least(recipe.warmup_steps, 0, f"{key}.warmup_steps")
    require(0 < _finite(recipe.warmup_factor, f"{key}.warmup_factor") <= 1, f"{key}.warmup_factor",
             f"{recipe.warmup_factor} is outside (0, 1]")
    if recipe.get("warmup_power") is not None:
        require(_finite(recipe.warmup_power, f"{key}.warmup_power") > 0, f"{key}.warmup_power",
                f"{recipe.warmup_power} must be > 0")
    for name in ("grad_clip", "recipe_batch_size", "eval_every", "eval_batches", "aspect_ratio_group_factor",
                 "decay_start"):
        _optional_positive(recipe.get(name), f"{key}.{name}")
    processes = recipe.get("sampler_processes")
    _optional_positive(processes, f"{key}.sampler_processes")
    if processes is not None:
        require(recipe.batch_size % processes == 0, f"{key}.sampler_processes",
                f"batch_size {recipe.batch_size} does not split evenly over {processes} processes")
    _positive(recipe.log_every, f"{key}.log_every")
    for i, milestone in enumerate(recipe.milestones):
        _positive(milestone, f"{key}.milestones[{i}]")


def _check_checkpoint(checkpoint: Optional[str]) -> None:
    if checkpoint is None:
        return
    path = Path(str(checkpoint)).expanduser()
    require(path.exists(), "checkpoint", f"{path} does not exist")
    require(path.is_file(), "checkpoint", f"{path} is not a regular file")
    require(path.stat().st_size > 0, "checkpoint", f"{path} is empty")


def _check_device(cfg: DictConfig) -> None:
    """``device=cuda`` needs a GPU where the job runs: here."""
    if cfg.device != "cuda":
        return
    import torch

    require(torch.cuda.is_available(), "device", "cuda: this machine has no CUDA GPU; allowed here: auto, cpu")


def _check_data(data: Any, tier: Any, key: str, tier_key: str, *, trains: bool) -> None:
    """Synthetic sets say their size in the config: the batch must fit in it (real sets are
    checked when the pre-flight reads them)."""
    if data.kind != "synthetic":
        return
    _positive(data.image_size, f"{key}.image_size")
    _positive(data.num_val, f"{key}.num_val")
    _positive(data.max_objects, f"{key}.max_objects")
    if trains and tier.recipe is not None:
        require(data.num_train >= tier.recipe.batch_size, f"{tier_key}.recipe.batch_size",
                 f"{tier.recipe.batch_size} is larger than the {data.num_train} training images of "
                 f"{key} (num_train)")


def _check_suite_entries(cfg: DictConfig) -> None:
    entries = cfg.suite.entries
    require(len(entries) > 0, "suite.entries", "empty: a suite needs at least one entry")
    first: dict[tuple, int] = {}
    for i, entry in enumerate(entries):
        key = f"suite.entries[{i}]"
        for j, seed in enumerate(entry.seeds):
            check_seed(seed, f"{key}.seeds[{j}]")
        repeated = sorted(s for s, n in Counter(entry.seeds).items() if n > 1)
        require(not repeated, f"{key}.seeds", f"seed(s) {repeated} listed twice: each would train the same job")
        identity = (entry.model, entry.tier, entry.hardware, entry.framework,
                    tuple(entry.overrides))
        require(identity not in first, key, f"repeats suite.entries[{first.get(identity)}] (same model, tier, "
                                             "hardware, framework and overrides): list its seeds there")
        first[identity] = i
