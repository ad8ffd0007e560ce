"""Plan: a suite (or one `run`) becomes JobSpecs, each with a stable job id and config hash."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Optional, Sequence, cast

from omegaconf import DictConfig, OmegaConf

from replicate.config.compose import compose_config
from replicate.config.overrides import Overrides
from replicate.config.selection import chosen_framework, chosen_variant
from replicate.errors import ConfigError
from replicate.jobs import PLACEMENT_KEYS, JobSpec
from replicate.redact import recorded_config


def plain(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain dicts and lists (a DictConfig's container is a dict)."""
    return cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))


def config_hash(cfg: DictConfig) -> str:
    """sha256 of what determines the job's result: model, tier, hardware, data (not its root)."""
    data = plain(cfg)
    for key in PLACEMENT_KEYS:
        data.pop(key, None)
    # An injected defect (``defect``) is hashed: an injected job never passes for a real one. No
    # defect hashes as the key's absence, so clean jobs keep the hashes they had before the key.
    if data.get("defect") is None:
        data.pop("defect", None)
    tier = data["model"]["tiers"][data["tier"]["name"]]
    dataset = dict(data["datasets"][tier["data"]])
    dataset.pop("root", None)
    data["datasets"] = {tier["data"]: dataset}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def make_spec(cfg: DictConfig, suite_id: Optional[str]) -> JobSpec:
    variant, framework = chosen_variant(cfg), chosen_framework(cfg)
    digest = config_hash(cfg)
    key = json.dumps([suite_id, cfg.model.name, variant, framework, cfg.tier.name, cfg.hardware.name,
                      int(cfg.seed), digest])
    injected = f"-{cfg.defect}" if cfg.get("defect") else ""   # an injected job says so in its id
    digest_id = hashlib.sha1(key.encode()).hexdigest()[:10]
    job_id = f"{cfg.model.name}-{cfg.tier.name}-s{cfg.seed}{injected}-{digest_id}"
    return JobSpec(job_id=job_id, suite_id=suite_id, model=cfg.model.name, variant=variant, framework=framework,
                   tier=cfg.tier.name, hardware=cfg.hardware.name, seed=int(cfg.seed),
                   # Recorded (store, Ray, W&B) without credentials; the worker reads no store or
                   # logger settings, and the hash above never covered them (placement keys).
                   config=recorded_config(plain(cfg)), config_hash=digest)


@dataclass
class PlannedJob:
    """A job of a suite, or the reason it cannot run (a model with a config but no implementation)."""

    spec: JobSpec
    cfg: DictConfig
    seed: int
    problem: Optional[str] = None


def default_suite_id(name: str) -> str:
    return f"{name}-{dt.datetime.now(dt.timezone.utc):%Y%m%d}"


def plan_suite(root: DictConfig, overrides: Sequence[str]) -> tuple[str, list[PlannedJob]]:
    """Expand the suite of ``root`` into jobs; global overrides apply to every job.

    A model whose config exists but which has no registered implementation becomes a planned
    job with a ``problem`` (recorded as ERROR), so the leaderboard shows it missing.
    """
    from models.registry import registered_names

    suite_id = root.suite_id or default_suite_id(root.suite.name)
    registered = set(registered_names())
    per_entry = ("model", "tier", "hardware", "suite", "suite_id", "seed")
    passthrough = Overrides.parse(overrides).without(*per_entry).as_list()
    jobs: list[PlannedJob] = []
    for entry in root.suite.entries:
        for seed in entry.seeds:
            job_overrides = [f"model={entry.model}", f"tier={entry.tier}", f"hardware={entry.hardware}",
                             f"seed={seed}", f"suite={root.suite.name}", f"suite_id={suite_id}",
                             *([f"framework={entry.framework}"] if entry.framework else []),
                             *entry.overrides, *passthrough]
            try:
                cfg = compose_config(job_overrides)
            except ConfigError as exc:
                raise ConfigError(f"suite.entries[{entry.model}/{entry.tier}/{entry.hardware}].{exc.key}",
                                  str(exc).split(": ", 1)[-1]) from None
            problem = None
            if entry.model not in registered:
                problem = f"model '{entry.model}' has a config but no registered implementation yet"
            jobs.append(PlannedJob(make_spec(cfg, suite_id), cfg, int(seed), problem))
    return suite_id, jobs
