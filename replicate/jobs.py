"""Plain-data job description and job result: they cross process and machine boundaries
(Ray workers) and land in the store unchanged, so they hold only JSON-able values."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Iterable, Mapping, Optional


class Verdict(StrEnum):
    """Verdict outcomes (docs/architecture.md, "Verdicts"). Members equal their strings, so rows
    read back from the store compare with them as they are."""

    PASS = "PASS"
    # A job with nothing to compare with (``tier.compare_with=none``): its metric was measured, not
    # judged. It is never a PASS - a check that cannot fail must not read as one - nor a failure.
    MEASURED = "MEASURED"
    BELOW = "BELOW"
    ABOVE = "ABOVE"
    # The metric is inside its band but the training loss of the schedule's last quarter is outside
    # the band of every healthy calibration draw: the job trained differently from the reference
    # (a loss term, a target, an optimizer), whatever the metric says.
    OFF_CURVE = "OFF_CURVE"
    EARLY_ABORT = "EARLY_ABORT"
    ERROR = "ERROR"
    INFRA = "INFRA"
    # Not run again: the job's fingerprint (config, code, packages, data) equals that of a PASS of
    # its group and seed inside its entry's cadence (replicate/scheduling/nightly.py); its row
    # repeats that PASS's metrics, links it (environment.unchanged_of) and costs nothing.
    UNCHANGED = "UNCHANGED"


PASS, MEASURED, BELOW, ABOVE = Verdict.PASS, Verdict.MEASURED, Verdict.BELOW, Verdict.ABOVE
OFF_CURVE, EARLY_ABORT, ERROR, INFRA = Verdict.OFF_CURVE, Verdict.EARLY_ABORT, Verdict.ERROR, Verdict.INFRA
UNCHANGED = Verdict.UNCHANGED
# Root config keys that say where and how a job runs, or which configs the lab admits (``lab``),
# not what it computes: they stay out of the config hash (so moving results_dir or switching the
# scheduler does not make finished jobs look new) and out of "what changed" between two runs
# (replicate/history.py).
PLACEMENT_KEYS = ("results_dir", "suite_id", "suite", "scheduler", "store", "logger", "num_threads", "device",
                  "lab")
# A seed group's identity: the fields its jobs share. The one home of the rule: the store's group
# key, the leaderboard's rows, the group verdicts and the history's series all derive from it.
GROUP_IDENTITY = ("model", "variant", "framework", "tier", "hardware")


def group_key(row: Mapping[str, Any]) -> tuple:
    """The seed group of a job's or a group's row (a spec's dict too): its GROUP_IDENTITY values."""
    return tuple(row[name] for name in GROUP_IDENTITY)


OUTCOMES = tuple(Verdict)   # in the order every summary shows them


def verdict_counts(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many ``rows`` (job or group rows) have each verdict, in :data:`OUTCOMES` order, only
    those present: the one count that suite summaries (console, report, W&B) show."""
    counts = Counter(row["verdict"] for row in rows)
    return {outcome: counts[outcome] for outcome in (*OUTCOMES, *sorted(set(counts) - set(OUTCOMES)))
            if counts[outcome]}


# Failure classes from the reengineering defect study (docs/architecture.md, "Failure classes").
STAGES = ("environment", "data pipeline", "modeling", "training", "evaluation", "infrastructure")
IMPACTS = (
    "crash",
    "accuracy below expectations",
    "speed below expectations",
    "numerical error",
    "hang",
    "memory exhaustion",
    "incorrect functionality",
)


@dataclass
class Failure:
    """Why a job is not PASS: the stage the defect likely sits in and its impact."""

    stage: str
    impact: str
    message: str
    exception: Optional[str] = None

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"failure stage {self.stage!r} not in {STAGES}")
        if self.impact not in IMPACTS:
            raise ValueError(f"failure impact {self.impact!r} not in {IMPACTS}")


@dataclass
class JobSpec:
    """Everything a worker needs to run one job; ``config`` is the resolved config as a dict."""

    job_id: str
    suite_id: Optional[str]
    model: str
    variant: str
    framework: str
    tier: str
    hardware: str
    seed: int
    config: dict[str, Any]
    config_hash: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Times:
    """Wall time split, in seconds."""

    setup_s: float = 0.0
    train_s: float = 0.0
    eval_s: float = 0.0
    lost_s: float = 0.0          # work redone after a restart (since the last checkpoint)
    # Submission to the job's first start: waiting for a free node (or for one to scale up). Kept
    # apart, and not in total_s: a queued job holds no accelerator and is not billed for one.
    queue_s: float = 0.0
    # What attempts that died held beyond the training they did (their setup and evaluations):
    # billed, since the machine was held (replicate/runner/attempts.py)
    retry_overhead_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.setup_s + self.train_s + self.eval_s + self.lost_s + self.retry_overhead_s


@dataclass
class JobResult:
    """What a job produced: metrics, curve, times, environment, or the failure that stopped it."""

    job_id: str
    metrics: dict[str, float] = field(default_factory=dict)
    curve: list[dict[str, float]] = field(default_factory=list)   # {"step", "loss"} / {"step", metric}
    times: Times = field(default_factory=Times)
    steps_done: int = 0
    steps_planned: int = 0
    images_seen: int = 0
    throughput: Optional[float] = None        # training images per second
    restarts: int = 0
    # every attempt: started, ended, host, node_id, pid, resumed_from_step, steps_done, cause, dead
    attempts: list[dict[str, Any]] = field(default_factory=list)
    lr_scaling: dict[str, Any] = field(default_factory=dict)
    early_check: dict[str, Any] = field(default_factory=dict)  # step, metric, reference, aborted
    environment: dict[str, Any] = field(default_factory=dict)
    failure: Optional[Failure] = None
    infra: bool = False                       # failed because of the cluster, not the model

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobResult":
        data = dict(data)
        data["times"] = Times(**data.get("times", {}))
        if data.get("failure"):
            data["failure"] = Failure(**data["failure"])
        return cls(**data)
