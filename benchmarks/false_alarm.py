"""False-alarm rate of the smoke verdicts, reproduced from the recorded calibration draws.

For every smoke job of a suite it reads the reference the job compares with (the draws that
`replicate calibrate` recorded in models/zoo_models/conf/model/*.yaml) and reports:

- the stated rate: ``tier.false_alarm`` per job, split between the 25% check and the final band;
- leave-one-out: each draw judged by the bands built from the other draws with the functions the
  verdict uses (``replicate.verdict.draws_band`` / ``draws_bound``, each test at its share of the
  budget): the final band, the final loss band, the 25% floor, the 25% loss band and the 25% weight
  drift band; how many healthy
  draws would have been flagged. With 12 draws and a 0.5% rate, 0 is expected; 1 or more says
  the draws are not the normal sample the band assumes (a heavy tail, two modes);
- Shapiro-Wilk's p-value of the final draws (of their logs when all are positive: the band's model);
- std/mean (the issue's target is <= 5%: a wider spread makes a band that cannot catch defects);
- for the suite: the chance that a night of healthy jobs shows at least one false red, and the
  expected false reds per 30 nights.

    python benchmarks/false_alarm.py [--suite smoke] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import asdict, dataclass
from typing import Any, Optional

from replicate.config.compose import compose_config
from replicate.config.selection import chosen_reference
from replicate.verdict import draws_band, draws_bound, early_check_alarm, final_false_alarm


@dataclass
class JobAlarm:
    job: str
    n: int
    mean: float
    std: float
    cv: float
    band: tuple[float, float]
    stated: float                 # per job, early check + final band
    loo_final_flagged: int        # draws outside the band of the other draws
    loo_early_flagged: int        # draws below the 25% floor of the other draws
    loo_loss_flagged: int         # draws whose 25% training loss is outside the other draws' band
    loo_drift_flagged: int        # draws whose 25% weight drift is outside the other draws' band
    loo_final_loss_flagged: int   # draws whose last-quarter training loss is outside the other draws' band
    shapiro_p: Optional[float]


def _loo_flags(values: list[float], judge) -> int:
    """How many draws ``judge(value, other_draws)`` rejects."""
    return sum(not judge(value, values[:i] + values[i + 1:]) for i, value in enumerate(values))


def _inside(band: Optional[tuple[float, float]], value: float) -> bool:
    return band is None or band[0] <= value <= band[1]


def job_alarm(entry: Any, suite: str) -> JobAlarm:
    overrides = [f"model={entry.model}", f"tier={entry.tier}", f"suite={suite}",
                 *([f"framework={entry.framework}"] if entry.framework else [])]
    cfg = compose_config(overrides)
    ref = chosen_reference(cfg)   # the framework's own reference (yolov3 in TensorFlow has one)
    final_alarm = final_false_alarm(cfg)   # each of the final verdict's tests (also_judged metrics included)
    early_alarm = early_check_alarm(cfg.tier.false_alarm)   # each of the early check's tests
    finals = [float(v) for v in ref.draws]

    def loo(key: str, judge) -> int:
        values = [float(v) for v in getattr(ref, key)]
        return _loo_flags(values, judge) if len(values) >= 3 else 0

    def above_floor(value: float, rest: list[float]) -> bool:
        floor = draws_bound(rest, early_alarm, ref.direction)
        return floor is None or (value >= floor if ref.direction == "higher" else value <= floor)

    shapiro = None
    if len(finals) >= 3 and statistics.stdev(finals) > 0:
        from scipy.stats import shapiro as shapiro_test

        shapiro = float(shapiro_test([math.log(v) for v in finals] if min(finals) > 0 else finals).pvalue)
    mean, std = statistics.fmean(finals), statistics.stdev(finals)
    band = draws_band(finals, final_alarm)
    assert band is not None
    return JobAlarm(job=f"{entry.model}{'/' + entry.framework if entry.framework else ''}", n=len(finals),
                    mean=mean, std=std, cv=std / abs(mean) if mean else math.inf, band=band,
                    stated=float(cfg.tier.false_alarm),
                    loo_final_flagged=loo("draws", lambda v, rest: _inside(draws_band(rest, final_alarm), v)),
                    loo_early_flagged=loo("early_draws", above_floor),
                    loo_loss_flagged=loo("early_loss_draws", lambda v, rest: _inside(draws_band(rest, early_alarm), v)),
                    loo_drift_flagged=loo("early_drift_draws",
                                          lambda v, rest: _inside(draws_band(rest, early_alarm), v)),
                    loo_final_loss_flagged=loo("final_loss_draws",
                                               lambda v, rest: _inside(draws_band(rest, final_alarm), v)),
                    shapiro_p=shapiro)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="smoke")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    root = compose_config([f"suite={args.suite}"])
    rows = [job_alarm(entry, args.suite) for entry in root.suite.entries if entry.tier == "smoke"]
    night = 1 - math.prod(1 - r.stated for r in rows)
    total_loo = sum(r.loo_final_flagged + r.loo_early_flagged + r.loo_loss_flagged + r.loo_drift_flagged
                    + r.loo_final_loss_flagged for r in rows)
    total_draws = sum(r.n for r in rows)
    summary = {"jobs": len(rows), "stated_per_job": rows[0].stated if rows else None,
               "night_false_red": night, "false_reds_per_30_nights": 30 * night,
               "loo_flagged": total_loo, "loo_draws": total_draws,
               "loo_rate": total_loo / total_draws if total_draws else None}
    if args.json:
        print(json.dumps({"jobs": [asdict(r) for r in rows], "suite": summary}, indent=2))
        return 0
    print(f"{'job':<22}{'n':>3}{'mean':>10}{'std':>9}{'std/mean':>9}  {'band':<20}{'LOO final':>10}"
          f"{'LOO loss':>9}{'LOO 25%':>8}{'LOO loss':>9}{'LOO drift':>10}{'Shapiro p':>10}")
    for r in rows:
        band = f"[{r.band[0]:.4g}, {r.band[1]:.4g}]"
        shapiro = f"{r.shapiro_p:.3f}" if r.shapiro_p is not None else "-"
        print(f"{r.job:<22}{r.n:>3}{r.mean:>10.4g}{r.std:>9.3g}{r.cv:>9.1%}  {band:<20}{r.loo_final_flagged:>10}"
              f"{r.loo_final_loss_flagged:>9}{r.loo_early_flagged:>8}{r.loo_loss_flagged:>9}{r.loo_drift_flagged:>10}"
              f"{shapiro:>10}")
    print(f"stated: {summary['stated_per_job']:.2%} per job -> {night:.2%} per night of {len(rows)} jobs, "
          f"{30 * night:.2f} false reds per 30 nights")
    print(f"leave-one-out: {total_loo} flags over {total_draws} healthy draws "
          f"({summary['loo_rate']:.2%}; final band, final loss band, 25% floor, loss and drift bands together)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
