"""Plan: a suite (or one `run`) becomes resolved jobs (replicate/resolved.py), each with a stable
job id and config hash."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Sequence

from omegaconf import DictConfig

from replicate.config.compose import compose_config
from replicate.config.overrides import Overrides
from replicate.errors import ConfigError
from replicate.resolved import ResolvedJob, resolve_job
from replicate.scheduling.nightly import cadence_s


def default_suite_id(name: str) -> str:
    return f"{name}-{dt.datetime.now(dt.timezone.utc):%Y%m%d}"


# What each entry of a suite sets for its jobs: the same key on the command line would be dropped
# without a word, so it is refused (the key in the entry beside it).
ENTRY_KEYS = {"model": "model", "tier": "tier", "hardware": "hardware", "seed": "seeds"}


def plan_suite(root: DictConfig, overrides: Sequence[str]) -> tuple[str, list[ResolvedJob]]:
    """Expand the suite of ``root`` into jobs; global overrides apply to every job.

    A model whose config exists but which has no registered implementation becomes a planned
    job with a ``problem`` (recorded as ERROR), so the leaderboard shows it missing.
    """
    from replicate.zoo.registry import registered_names

    given = Overrides.parse(overrides)
    for key, entry_key in ENTRY_KEYS.items():
        if given.has(key):
            raise ConfigError(key, f"{key}={given.value(key)} does not apply to a suite: its entries set each job's "
                                   f"{key} (suite.entries[*].{entry_key}); edit conf/suite/{root.suite.name}.yaml, "
                                   f"pass suite.entries=[...], or run one job with `replicate run {key}=...`")
    budget = root.suite.get("budget")
    if budget is not None and not float(budget) >= 0:
        raise ConfigError("suite.budget", f"{budget} must be >= 0 (or null: no limit)")
    suite_id = root.suite_id or default_suite_id(root.suite.name)
    registered = set(registered_names())
    passthrough = given.without("suite", "suite_id").as_list()
    jobs: list[ResolvedJob] = []
    for index, entry in enumerate(root.suite.entries):
        every = cadence_s(entry.get("every"), f"suite.entries[{index}].every")
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
            jobs.append(dataclasses.replace(resolve_job(cfg, suite_id, problem), every_s=every))
    return suite_id, jobs
