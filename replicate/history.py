"""History over suites: metric series, regressions, what changed since the last PASS, drift.

Pure functions over the store's rows (dicts from :meth:`ResultStore.group_history` and
:meth:`ResultStore.jobs`); nothing here touches the database, so the CLI, the HTML report and the
tests share one definition of a regression and of drift.

Terms:
    group: one model x variant x framework x tier x hardware of a suite (its seed-aggregated
        verdict, a row of ``group_verdicts``); the same group across suites forms a series.
    regression: a group whose verdict was PASS in some earlier suite and is a judged non-PASS
        now (MEASURED, nothing to compare with, is neither a PASS baseline nor a regression).
    what changed: the difference between a job of the group's last PASS and a job of the group
        now: environment fingerprint, git commit, dataset manifest hash, and the config key by key.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence

from replicate.config.schema import Direction
from replicate.jobs import MEASURED, PASS, PLACEMENT_KEYS, UNCHANGED
from replicate.runner.code_fingerprint import KEYS as CODE_KEYS
from replicate.store.tables import GROUP_KEY

# A group's identity across suites (the store's group key without the suite).
SERIES_KEY = GROUP_KEY[1:]

# Fingerprint keys compared for "what changed" (docs/architecture.md, "Environment fingerprint"), by the
# heading they are reported under. ``platform`` (kernel build string) and ``config_hash`` are
# left out on purpose: the first differs between nodes of one cluster without meaning anything,
# the second only restates the key-by-key config diff.
ENVIRONMENT_KEYS: dict[str, tuple[str, ...]] = {
    "environment": ("python", "torch", "torchvision", "tensorflow", "tensorflow-cpu", "numpy", "cuda",
                    "cudnn", "driver", "accelerator", "ray", "precision"),
    "git": ("git_commit", "git_dirty"),
    "dataset": ("dataset_hash",),
}
# What computed the job (CODE_KEYS, replicate/runner/code_fingerprint.py) is known for every job the
# harness recorded, even one that never started, so it is compared apart from the worker's environment.

# Config keys that say where, when and how a job was scheduled, not what it computes, plus
# ``seed``: jobs of different seeds are compared only when no common seed exists.
CONFIG_NOISE_KEYS = (*PLACEMENT_KEYS, "seed")

# Drift rule thresholds (see :func:`detect_drift`).
DRIFT_MIN_RECENT = 3      # k: a shift must be sustained over at least this many latest suites
DRIFT_MIN_BASELINE = 3    # earlier suites needed to know what "normal" was
DRIFT_Z = 3.5             # how many standard errors of the difference of means count as a shift


def is_failure(verdict: str) -> bool:
    """A verdict that can be a regression: judged and not PASS. MEASURED had nothing to compare
    with: it proves nothing either way, so it neither regresses nor serves as a PASS baseline;
    UNCHANGED repeats a PASS of the same fingerprint."""
    return verdict not in (PASS, MEASURED, UNCHANGED)


def series_key(row: Mapping[str, Any]) -> tuple:
    """The identity of a group (or a job's group) across suites."""
    return tuple(row[c] for c in SERIES_KEY)


def key_label(key: Sequence[Any]) -> str:
    """``model/variant/framework/tier/hardware`` for people."""
    return "/".join(str(k) for k in key)


# Series -------------------------------------------------------------------------------------


@dataclass
class Point:
    """One suite's value of a group: the seed mean, its spread and verdict, and the band."""

    suite_id: str
    created_at: Optional[str]
    verdict: str
    mean: Optional[float]
    std: Optional[float]
    seeds: list[int]
    band_low: Optional[float]
    band_high: Optional[float]
    target: Optional[float]
    spread: Optional[float]       # the reference's measured seed noise, when the target has one
    target_kind: Optional[str] = None   # claim | reference | reference_curve | none


def _point(group: Mapping[str, Any]) -> Point:
    target = group.get("compared_with") or {}
    return Point(suite_id=group["suite_id"], created_at=group.get("suite_created_at") or group.get("created_at"),
                 verdict=group["verdict"], mean=group.get("mean"), std=group.get("std"),
                 seeds=list(group.get("seeds") or []), band_low=target.get("low"), band_high=target.get("high"),
                 target=target.get("value"), spread=target.get("spread"), target_kind=target.get("kind"))


def metric_series(groups: Iterable[Mapping[str, Any]]) -> dict[tuple, list[Point]]:
    """Each group's points over suites, oldest first.

    Args:
        groups: group rows in suite order, oldest first (as ``ResultStore.group_history`` gives).
    """
    series: dict[tuple, list[Point]] = defaultdict(list)
    for group in groups:
        series[series_key(group)].append(_point(group))
    return dict(series)


# Regressions ---------------------------------------------------------------------------------


@dataclass
class Change:
    """One difference between the last PASS and now; ``section`` is environment, git, dataset, code
    or config; ``key`` is a fingerprint key or a dotted config key."""

    section: str
    key: str
    before: Any
    after: Any


@dataclass
class Regression:
    """A group that passed in an earlier suite and does not now."""

    key: tuple
    suite_id: str
    verdict: str
    mean: Optional[float]
    last_pass_suite_id: str
    last_pass_mean: Optional[float]
    newly: bool                   # True when the last judged suite before this one passed
    changes: list[Change] = field(default_factory=list)
    compared_jobs: tuple[Optional[str], Optional[str]] = (None, None)   # (last PASS job, job now)
    unrecorded: list[str] = field(default_factory=list)   # e.g. "environment of job X": not compared

    @property
    def label(self) -> str:
        return key_label(self.key)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "key": list(self.key), "label": self.label}


def find_regressions(groups: Sequence[Mapping[str, Any]], suite_id: str,
                     jobs: Iterable[Mapping[str, Any]] = ()) -> list[Regression]:
    """The regressions of ``suite_id``, with what changed since each one's last PASS.

    Args:
        groups: group rows of every suite, oldest suite first (``ResultStore.group_history``).
        suite_id: the suite to judge.
        jobs: job rows of (at least) the suites involved; without them ``changes`` stays empty.
    """
    by_key: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for group in groups:
        by_key[series_key(group)].append(group)
    jobs_by = defaultdict(list)
    for job in jobs:
        jobs_by[(job.get("suite_id"), series_key(job))].append(job)
    found = []
    for key, rows in by_key.items():
        position = next((i for i, g in enumerate(rows) if g["suite_id"] == suite_id), None)
        if position is None or not is_failure(rows[position]["verdict"]):
            continue
        # Only judged suites count as "before": a MEASURED suite in between says nothing.
        earlier = [g for g in rows[:position] if g["verdict"] != MEASURED]
        last_pass = next((g for g in reversed(earlier) if g["verdict"] == PASS), None)
        if last_pass is None:
            continue
        now = rows[position]
        before_job, after_job = pair_jobs(jobs_by[(last_pass["suite_id"], key)], jobs_by[(suite_id, key)])
        found.append(Regression(
            key=key, suite_id=suite_id, verdict=now["verdict"], mean=now.get("mean"),
            last_pass_suite_id=last_pass["suite_id"], last_pass_mean=last_pass.get("mean"),
            newly=earlier[-1]["verdict"] == PASS,
            changes=what_changed(before_job, after_job) if before_job and after_job else [],
            compared_jobs=(before_job["job_id"] if before_job else None, after_job["job_id"] if after_job else None),
            unrecorded=unrecorded(before_job, after_job) if before_job and after_job else []))
    return sorted(found, key=lambda r: r.key)


def pair_jobs(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]
              ) -> tuple[Optional[Mapping[str, Any]], Optional[Mapping[str, Any]]]:
    """One job of each side to diff: the lowest seed both ran, else each side's lowest seed.

    The same seed keeps seed-dependent config out of the diff.
    """
    if not before or not after:
        return (min(before, key=_seed) if before else None), (min(after, key=_seed) if after else None)
    common = sorted({_seed(j) for j in before} & {_seed(j) for j in after})
    if common:
        pick = lambda rows: next(j for j in rows if _seed(j) == common[0])  # noqa: E731
        return pick(before), pick(after)
    return min(before, key=_seed), min(after, key=_seed)


def _seed(job: Mapping[str, Any]) -> int:
    return int(job.get("seed") or 0)


# What changed --------------------------------------------------------------------------------


def what_changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Change]:
    """Fingerprint and config differences between two job rows, only the keys that differ.

    A side that recorded no environment (a job that failed before it started) or no config is
    not compared: every key would look changed (see :func:`unrecorded`).
    """
    changes = []
    old_env, new_env = before.get("environment") or {}, after.get("environment") or {}
    if _worker_ran(old_env) and _worker_ran(new_env):
        changes += environment_diff(old_env, new_env)
    if all(key in env for key in CODE_KEYS for env in (old_env, new_env)):
        changes += [Change("code", key, old_env[key], new_env[key])
                    for key in CODE_KEYS if old_env[key] != new_env[key]]
    if before.get("config") and after.get("config"):
        changes += [Change("config", key, old, new) for key, old, new in config_diff(before["config"], after["config"])]
    return changes


def _worker_ran(environment: Mapping[str, Any]) -> bool:
    """The job's worker recorded what it ran on (keys beyond the driver's own: its deadline and code)."""
    return any(key not in (*CODE_KEYS, "deadline") for key in environment)


def unrecorded(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """What :func:`what_changed` could not compare, e.g. ``environment of job X``."""
    recorded = {"environment": lambda job: _worker_ran(job.get("environment") or {}),
                "config": lambda job: bool(job.get("config"))}
    return [f"{part} of job {job['job_id']}" for part, has in recorded.items() for job in (before, after)
            if not has(job)]


def environment_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Change]:
    """Differences of the fingerprint keys in :data:`ENVIRONMENT_KEYS`, in that order."""
    return [Change(section, key, before.get(key), after.get(key))
            for section, keys in ENVIRONMENT_KEYS.items() for key in keys
            if before.get(key) != after.get(key)]


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{"a.b.c": leaf}``; lists are leaves (compared as a whole)."""
    if not isinstance(data, Mapping):
        return {prefix: data}
    if not data and prefix:
        return {prefix: {}}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def config_diff(before: Mapping[str, Any], after: Mapping[str, Any],
                ignore: Sequence[str] = CONFIG_NOISE_KEYS) -> list[tuple[str, Any, Any]]:
    """``(dotted key, before, after)`` for every differing leaf; a missing key shows as None.

    Top-level ``ignore`` keys (placement, scheduling, seed) are skipped, and of ``datasets`` only
    the dataset the job's tier reads counts, without its ``root`` (a mount point, not content;
    the manifest hash covers the content) - the same rule the config hash follows.
    """
    old, new = _comparable(before, ignore), _comparable(after, ignore)
    flat_old, flat_new = flatten(old), flatten(new)
    return [(key, flat_old.get(key), flat_new.get(key))
            for key in sorted(set(flat_old) | set(flat_new)) if flat_old.get(key) != flat_new.get(key)]


def _comparable(config: Mapping[str, Any], ignore: Sequence[str]) -> dict[str, Any]:
    data = {k: v for k, v in config.items() if k not in ignore}
    datasets = data.get("datasets")
    try:
        used = data["model"]["tiers"][data["tier"]["name"]]["data"]
    except (KeyError, TypeError):
        used = None
    if isinstance(datasets, Mapping) and used in datasets:
        data["datasets"] = {used: {k: v for k, v in datasets[used].items() if k != "root"}}
    return data


# Drift ---------------------------------------------------------------------------------------


@dataclass
class Drift:
    """A sustained shift of a group's metric (see :func:`detect_drift`)."""

    key: tuple
    since_suite_id: str           # first suite of the shifted stretch
    recent: int                   # suites in the shifted stretch (>= DRIFT_MIN_RECENT)
    baseline: int                 # suites before it
    baseline_mean: float
    recent_mean: float
    shift: float                  # recent_mean - baseline_mean
    noise: float                  # seed noise (one std) the shift is measured against
    z: float                      # shift / standard error of the difference of the two means
    direction: str                # "worse" or "better" given the metric's direction

    @property
    def label(self) -> str:
        return key_label(self.key)

    def describe(self) -> str:
        return (f"{self.direction} by {self.shift:+.4g} since {self.since_suite_id} ({self.recent} suites, "
                f"mean {self.recent_mean:.4g} vs {self.baseline_mean:.4g} over {self.baseline} earlier; "
                f"seed noise {self.noise:.3g}, z={self.z:.1f})")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "key": list(self.key), "label": self.label, "description": self.describe()}


def seed_noise(points: Sequence[Point]) -> Optional[float]:
    """One seed's standard deviation: the larger of the reference's measured spread and the
    pooled within-suite spread (root mean square of the suites' seed stds)."""
    spreads = [p.spread for p in points if p.spread]
    stds = [p.std for p in points if p.std]
    candidates = ([max(spreads)] if spreads else []) + ([math.sqrt(statistics.fmean(s * s for s in stds))]
                                                        if stds else [])
    return max(candidates) if candidates else None


def detect_drift(key: tuple, points: Sequence[Point], direction: str = Direction.HIGHER, *,
                 min_recent: int = DRIFT_MIN_RECENT, min_baseline: int = DRIFT_MIN_BASELINE,
                 z_threshold: float = DRIFT_Z) -> Optional[Drift]:
    """Flag a sustained shift of the metric beyond the measured seed noise, anywhere in history.

    Rule: for every split of the series into a baseline (the suites before it, at least
    ``min_baseline``) and a recent stretch (from the split to the latest suite, at least
    ``min_recent``), compute ``z = (mean(recent) - mean(baseline)) / (sigma * sqrt(1/k + 1/n))``
    where ``sigma`` is one seed's noise (:func:`seed_noise`), k and n the two lengths. The series
    drifts when, for some split, ``|z| > z_threshold`` *and* every recent point lies on the same
    side of the baseline mean; the split with the largest ``|z|`` is reported.

    Rationale: ``sigma * sqrt(1/k + 1/n)`` is the standard error of a difference of two means of
    independent runs, so seed noise alone exceeds 3.5 of them about 0.05% of the time per split;
    scanning every split multiplies the chances, hence 3.5 rather than 3. Simulated with pure
    noise (sigma = 1), a series of 10-40 suites is flagged 0-0.5% of the time (1% at 3.0); a shift
    of 2 sigma over the last 4 of 14 suites is caught 54% of the time, 3 sigma 94%, and each
    further shifted suite raises the odds. The same-side condition makes it *sustained*: one bad
    night (an outlier) pulls the recent mean but cannot put every recent point beyond the
    baseline, so it is left to the verdict and the regression check. Scanning all splits finds a
    shift that began weeks ago even when tonight looks like last night - which a night-over-night
    comparison misses - and a slow slide inside the tolerance band, before it becomes a BELOW.
    Each point is a seed mean, treated as one seed's value: that overstates its noise when a suite
    runs several seeds, erring towards no flag. Without a noise estimate (no reference spread,
    single seeds) nothing is flagged.

    Args:
        key: the group's series key (for the report).
        points: the group's points, oldest first; points without a mean are skipped.
        direction: ``higher`` or ``lower`` is better, to name the shift worse or better.
    """
    values = [(p.suite_id, p.mean) for p in points if p.mean is not None]
    sigma = seed_noise(points)
    if not sigma or len(values) < min_recent + min_baseline:
        return None
    best: Optional[Drift] = None
    for split in range(min_baseline, len(values) - min_recent + 1):
        base = [v for _, v in values[:split]]
        recent = [v for _, v in values[split:]]
        base_mean, recent_mean = statistics.fmean(base), statistics.fmean(recent)
        shift = recent_mean - base_mean
        z = shift / (sigma * math.sqrt(1 / len(recent) + 1 / len(base)))
        same_side = all(v > base_mean for v in recent) or all(v < base_mean for v in recent)
        if abs(z) > z_threshold and same_side and (best is None or abs(z) > abs(best.z)):
            worse = shift < 0 if direction == Direction.HIGHER else shift > 0
            best = Drift(key, values[split][0], len(recent), len(base), base_mean, recent_mean, shift, sigma, z,
                         "worse" if worse else "better")
    return best


def drifts(series: Mapping[tuple, Sequence[Point]], directions: Mapping[tuple, str] | None = None) -> list[Drift]:
    """:func:`detect_drift` over every series; ``directions`` maps a key to higher/lower."""
    directions = directions or {}
    found = [detect_drift(key, points, directions.get(key, Direction.HIGHER)) for key, points in series.items()]
    return sorted((d for d in found if d is not None), key=lambda d: d.key)


def directions_of(groups: Iterable[Mapping[str, Any]]) -> dict[tuple, str]:
    """Each series' metric direction, from its latest group's target."""
    out = {}
    for group in groups:
        direction = (group.get("compared_with") or {}).get("direction")
        if direction:
            out[series_key(group)] = direction
    return out


# A model's history, for the CLI ----------------------------------------------------------------


def model_history(groups: Sequence[Mapping[str, Any]], jobs: Sequence[Mapping[str, Any]] = ()) -> list[dict]:
    """One row per group and suite, oldest first, marked with regressions and drift.

    Each row: the series key columns, suite id and time, verdict, mean, std, seeds, band,
    ``regression`` (last PASS suite id, or None), ``drift`` (the description, on the points of the
    drifted stretch, else None) and ``changes`` (what changed, for regressions).
    """
    series = metric_series(groups)
    directions = directions_of(groups)
    regressions: dict[tuple, Regression] = {}
    for suite_id in dict.fromkeys(g["suite_id"] for g in groups):
        for reg in find_regressions(groups, suite_id, jobs):
            regressions[(reg.key, suite_id)] = reg
    rows = []
    for key, points in series.items():
        drift = detect_drift(key, points, directions.get(key, Direction.HIGHER))
        drifted = False
        for point in points:
            drifted = drifted or (drift is not None and point.suite_id == drift.since_suite_id)
            found = regressions.get((key, point.suite_id))
            rows.append({**dict(zip(SERIES_KEY, key)), **asdict(point),
                         "regression": found.last_pass_suite_id if found else None,
                         "changes": [asdict(c) for c in found.changes] if found else [],
                         "drift": f"{drift.label}: {drift.describe()}" if drift is not None and drifted else None})
    return rows


def diff_suites(groups: Sequence[Mapping[str, Any]]) -> list[str]:
    """The suites whose jobs :func:`model_history` diffs: each regression's suite and its last
    PASS suite. A reader loads only these suites' jobs for "what changed", not every job."""
    needed: set[str] = set()
    for suite_id in dict.fromkeys(g["suite_id"] for g in groups):
        for reg in find_regressions(groups, suite_id):
            needed |= {suite_id, reg.last_pass_suite_id}
    return sorted(needed)


def annotate_jobs(jobs: Sequence[Mapping[str, Any]], history: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Job rows with their group's ``group_verdict``, ``group_mean``, ``group_std``,
    ``regression`` (last PASS suite id or None) and ``drift`` (or None), from
    :func:`model_history` rows; jobs outside any suite get None for each."""
    by_group = {(r["suite_id"], series_key(r)): r for r in history}
    out = []
    for job in jobs:
        row = by_group.get((job.get("suite_id"), series_key(job)), {})
        out.append({**job, "group_verdict": row.get("verdict"), "group_mean": row.get("mean"),
                    "group_std": row.get("std"), "regression": row.get("regression"), "drift": row.get("drift")})
    return out
