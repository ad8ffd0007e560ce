"""A job resolved once: everything the driver, the worker, calibrate, check and k8s need to know
about one job, decided in one place (:func:`resolve_job`) and never recomputed downstream.

The worker receives it over the wire (:meth:`ResolvedJob.to_wire`, plain JSON through Ray) and
rebuilds it without resolving anything again (:meth:`ResolvedJob.from_wire`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Optional, cast

from omegaconf import DictConfig, OmegaConf

from replicate.config.schema import Precision
from replicate.config.selection import chosen_framework, chosen_variant
from replicate.jobs import PLACEMENT_KEYS, JobSpec, group_key
from replicate.precision import chosen_precision
from replicate.redact import recorded_config
from replicate.verdict import EarlyCheck, Target, early_check_for, target_for


@dataclass(frozen=True)
class ResolvedJob:
    """One job of a suite (or a single run), resolved.

    Attributes:
        spec: What the worker runs and the store records (ids, implementation, config, hash).
        cfg: The resolved config (``spec.config`` as a DictConfig, credentials included).
        target: What the final metric is compared with, and its band.
        early: The early check's thresholds and bands.
        problem: Why the job cannot run (a model config without an implementation), else None.
        every_s: The cadence of its suite entry in seconds (None: every run).
        threads: The CPU threads the job runs on (its intra-op pools, its Ray task's CPUs),
            decided once here (scheduling/resources.py ``job_threads``) and read by the
            scheduler, the worker and the loop from the job itself.
    """

    spec: JobSpec
    cfg: DictConfig
    target: Target
    early: EarlyCheck
    problem: Optional[str] = None
    every_s: Optional[float] = None   # its suite entry's cadence (the driver decides; not sent to workers)
    threads: int = field(kw_only=True)   # always decided: resolve_job, from_wire

    @property
    def job_id(self) -> str:
        return self.spec.job_id

    @property
    def seed(self) -> int:
        return self.spec.seed

    @property
    def group_key(self) -> tuple[str, ...]:
        """The seed group the job belongs to (jobs.GROUP_IDENTITY)."""
        return group_key(vars(self.spec))   # vars, not to_dict: no deep copy of the config per call

    @property
    def hardware(self) -> DictConfig:
        return self.cfg.hardware

    @property
    def workers(self) -> int:
        """Data-parallel workers: ``workers``, else one per GPU of a GPU profile, else 1. A job
        that does not train has nothing to parallelise."""
        if not self.cfg.tier.trains or self.spec.framework != "torch":
            return 1   # nothing to train, or TensorFlow's own strategy spreads it (runner/strategy.py)
        if self.cfg.get("workers") is not None:
            return int(self.cfg.workers)
        return int(self.hardware.count) if self.hardware.accelerator == "gpu" else 1

    @property
    def injected(self) -> Optional[str]:
        """The defect injected into the job on purpose (``defect=NAME``), else None."""
        return self.cfg.get("defect")

    def to_wire(self) -> dict[str, Any]:
        """Plain JSON for crossing a process or machine boundary (a Ray task's argument)."""
        return {"spec": self.spec.to_dict(), "target": self.target.to_dict(), "early": self.early.to_dict(),
                "threads": self.threads}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> "ResolvedJob":
        spec = JobSpec(**data["spec"])
        return cls(spec, OmegaConf.create(spec.config), Target.from_dict(data["target"]),
                   EarlyCheck.from_dict(data["early"]), threads=int(data["threads"]))


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
    # The precision the job asks for, wherever it was set (``precision=amp`` or the tier's key),
    # hashes as the tier's; fp32, every reference's, hashes as the key's absence, so jobs keep the
    # hashes they had before precision was a setting.
    tier["precision"] = chosen_precision(cfg)
    data.pop("precision", None)
    for each in data["model"]["tiers"].values():
        if each.get("precision") == Precision.FP32:
            each.pop("precision")
    # How a cost is shown (its currency, whether the price is a placeholder) decides nothing a job
    # computes: left out, so jobs keep the hashes they had before these keys.
    for shown in ("currency", "price_placeholder"):
        data["hardware"].pop(shown, None)
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


def resolve_job(cfg: DictConfig, suite_id: Optional[str], problem: Optional[str] = None) -> ResolvedJob:
    """Resolve the composed config of one job: its spec, comparison target, early check and threads."""
    from replicate.scheduling.resources import job_threads

    spec = make_spec(cfg, suite_id)
    target = target_for(cfg, spec.variant)
    return ResolvedJob(spec, cfg, target, early_check_for(cfg, target.direction), problem, threads=job_threads(cfg))
