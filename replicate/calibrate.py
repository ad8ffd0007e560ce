"""Calibrate a smoke reference: run a model's smoke tier over seeds and derive the band.

The smoke tier is compared with a recorded reference of this implementation, whose band comes
from measured seed noise (design.md, "Tiers"). This measures it and prints the YAML to record.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from typing import Any, Callable, Sequence

from replicate.config.compose import compose_config
from replicate.harness import _execute
from replicate.plan import PlannedJob, make_spec
from replicate.runner.environment import _git

MIN_TOLERANCE, MAX_TOLERANCE = 0.1, 0.5
EARLY = 0.25


def calibrate(overrides: Sequence[str], seeds: Sequence[int], echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``seeds`` of the smoke tier; return the reference block (metric, value, spread, curve)."""
    base = [*overrides, "tier=smoke", "tier.compare_with=none"]
    probe = compose_config(base)
    steps = probe.model.tiers.smoke.recipe.steps
    if steps is None:
        from replicate.errors import ConfigError

        raise ConfigError("model.tiers.smoke.recipe.steps", "calibration needs a step count, not epochs")
    early_step = math.ceil(EARLY * steps)
    planned = []
    for seed in seeds:
        cfg = compose_config([*base, f"seed={seed}", f"model.tiers.smoke.recipe.eval_every={early_step}"])
        planned.append(PlannedJob(make_spec(cfg, None), cfg, int(seed)))
    result = _execute(probe, planned, None, echo, skip_finished=False)
    metric = result.jobs[0]["metric_name"]
    failed = [r for r in result.jobs if r["verdict"] != "PASS"]
    if failed:
        raise RuntimeError(f"calibration run failed: {failed[0]['failure_message']}")
    finals = [r["metric_value"] for r in result.jobs]
    earlies = [next(p[metric] for p in r["curve"] if p.get("step") == early_step and metric in p)
               for r in result.jobs]
    return reference_block(probe, metric, seeds, finals, earlies, overrides)


def record_location(overrides: Sequence[str]) -> str:
    """Where the measured block belongs: a model's first framework owns ``reference``, any other
    framework its own ``framework_references.NAME`` (validate.py selects it for that framework)."""
    from replicate.config.validate import chosen_framework

    cfg = compose_config([*overrides, "tier=smoke", "tier.compare_with=none"])
    framework = chosen_framework(cfg)
    if framework == cfg.model.frameworks[0]:
        return "model.tiers.smoke.reference"
    return f"model.tiers.smoke.framework_references.{framework}"


def reference_block(cfg: Any, metric: str, seeds: Sequence[int], finals: list[float], earlies: list[float],
                    overrides: Sequence[str]) -> dict[str, Any]:
    mean = statistics.fmean(finals)
    spread = statistics.stdev(finals) if len(finals) > 1 else 0.0
    # Three standard deviations of seed noise, bounded to the lab's sane range.
    tolerance = min(MAX_TOLERANCE, max(MIN_TOLERANCE, 3 * spread / abs(mean) if mean else MAX_TOLERANCE))
    reference = cfg.model.tiers.smoke.reference
    direction = reference.direction if reference is not None else next(c.direction for c in cfg.model.claims if c.primary)
    command = " ".join(["replicate calibrate", *overrides, f"--seeds {','.join(map(str, seeds))}"])
    return {
        "metric": metric, "value": round(mean, 4), "spread": round(spread, 4), "seeds": list(seeds),
        "tolerance": round(tolerance, 3), "direction": direction,
        "curve": {str(EARLY): round(statistics.fmean(earlies), 4)},
        "source": f"measured: `{command}` on {dt.date.today().isoformat()} (git {(_git('rev-parse', '--short', 'HEAD') or 'unknown')}); "
                  f"per seed: {', '.join(f'{v:.4g}' for v in finals)}",
    }
