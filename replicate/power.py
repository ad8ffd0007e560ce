"""The benchmark's power, from selftest rows: was an injected defect flagged, where, and at what
share of the run's cost; how many clean controls passed. Pure functions over plain rows, shared
by ``replicate selftest`` (replicate/selftest.py), the store and the report's power page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

from replicate.jobs import ABOVE, BELOW, EARLY_ABORT, ERROR, INFRA, OFF_CURVE, PASS

# The one seed of every selftest job, defects and controls alike: not a calibration seed
# (models/zoo_models/conf/model/*.yaml reference seeds, replicate.calibrate's defaults), so a control is a fresh
# draw from the reference's distribution, not one the band was built from.
SELFTEST_SEED = 1000

# Where a defect was caught, in the order a run reaches them.
PREFLIGHT, EARLY_CHECK, FINAL_VERDICT, MISSED = "pre-flight", "25% check", "final verdict", "missed"
# An ERROR before the schedule ended: a check on the job's own path (reference settings, the
# schedule, the evaluation path) stopped it there, at what the job had cost by then.
DURING_RUN = "during the run"
NOT_MEASURED = "not measured"   # INFRA: the cluster failed the job; it says nothing about the defect
CAUGHT_AT = (PREFLIGHT, DURING_RUN, EARLY_CHECK, FINAL_VERDICT, MISSED, NOT_MEASURED)
FLAGGING_VERDICTS = (EARLY_ABORT, BELOW, ABOVE, OFF_CURVE, ERROR)   # PASS and MEASURED flag nothing
DEFECT, CONTROL = "defect", "control"


@dataclass(frozen=True)
class Catch:
    """Whether a defect was flagged, where, and the share of the clean run's cost spent by then."""

    flagged: bool
    caught_at: str
    cost_share: Optional[float]


def cost_share(spent_s: Optional[float], full_run_s: Optional[float]) -> Optional[float]:
    """``spent_s`` as a share of a full clean run (at most 1); None when either is unknown."""
    if spent_s is None or not full_run_s:
        return None
    return min(1.0, max(0.0, float(spent_s) / float(full_run_s)))


def catch(verdict: Optional[str], *, caught_by_preflight: bool, preflight_s: float = 0.0,
          job_wall_s: Optional[float] = None, control_wall_s: Optional[float] = None,
          steps_done: int = 0, steps_planned: int = 0) -> Catch:
    """Where a defect was caught, from its pre-flight result and its smoke job's verdict.

    Args:
        verdict: The defective smoke job's verdict (None when it did not run: caught at pre-flight).
        caught_by_preflight: A check that passes on the clean job failed on the defective one.
        preflight_s: Seconds the defective job's pre-flight took.
        job_wall_s: The defective job's wall time (an early abort stops it part-way).
        control_wall_s: The clean control's wall time: the cost of a full run.
        steps_done, steps_planned: The defective job's steps, when wall times are unknown.

    Returns:
        pre-flight: share = the check's time over a full run; 25% check (EARLY_ABORT): the job's
        time over a full run (else its share of steps); during the run (ERROR before the last
        step): the same; final verdict (BELOW, ABOVE, OFF_CURVE, ERROR): the
        whole run, 1.0; missed (PASS or MEASURED): no share; INFRA: not measured.
    """
    if caught_by_preflight:
        return Catch(True, PREFLIGHT, cost_share(preflight_s, control_wall_s))
    if verdict == EARLY_ABORT:
        share = cost_share(job_wall_s, control_wall_s)
        if share is None and steps_planned:
            share = cost_share(steps_done, steps_planned)
        return Catch(True, EARLY_CHECK, share)
    if verdict == ERROR and steps_planned and steps_done < steps_planned:
        share = cost_share(job_wall_s, control_wall_s)
        return Catch(True, DURING_RUN, share if share is not None else cost_share(steps_done, steps_planned))
    if verdict in FLAGGING_VERDICTS:
        return Catch(True, FINAL_VERDICT, 1.0)
    if verdict is None or verdict == INFRA:
        return Catch(False, NOT_MEASURED, None)
    return Catch(False, MISSED, None)


def _share(part: int, whole: int) -> Optional[float]:
    return part / whole if whole else None


def written_before_checks(name: Optional[str]) -> bool:
    """Whether the catalogue's defect ``name`` was written before the checks were looked at with
    it in mind and no check has been fitted to it since (``Defect.not_tuned``,
    replicate/defects/registry.py); False for one no longer in the catalogue."""
    from replicate.defects import get_defect
    from replicate.errors import ConfigError

    try:
        return bool(name) and get_defect(str(name)).not_tuned
    except ConfigError:
        return False


def _half(defects: list[Mapping[str, Any]]) -> dict[str, Any]:
    flagged = sum(1 for r in defects if r["flagged"])
    return {"defects": len(defects), "flagged": flagged, "flagged_share": _share(flagged, len(defects))}


def summarize(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The selftest's headline numbers.

    ``flagged_share``: flagged defects over measured ones (INFRA left out); ``controls_pass_share``:
    clean controls that PASS over measured ones; ``training_max_cost_share``: the largest cost
    share at which a training-stage defect was caught (None if none was); counts by ``caught_at``;
    ``not_tuned`` and ``tuned``: the same count for the defects written before the checks were
    looked at with them in mind (the power on defects nobody tuned the checks to) and for the rest.
    """
    rows = list(rows)
    defects = [r for r in rows if r["role"] == DEFECT and r["caught_at"] != NOT_MEASURED]
    controls = [r for r in rows if r["role"] == CONTROL and r.get("verdict") not in (None, INFRA)]
    training = [r["cost_share"] for r in defects
                if r["stage"] == "training" and r["flagged"] and r.get("cost_share") is not None]
    return {
        "defects": len(defects),
        "flagged": sum(1 for r in defects if r["flagged"]),
        "flagged_share": _share(sum(1 for r in defects if r["flagged"]), len(defects)),
        "controls": len(controls),
        "controls_pass": sum(1 for r in controls if r["verdict"] == PASS),
        "controls_pass_share": _share(sum(1 for r in controls if r["verdict"] == PASS), len(controls)),
        "training_max_cost_share": max(training) if training else None,
        "caught_at": {where: sum(1 for r in rows if r["role"] == DEFECT and r["caught_at"] == where)
                      for where in CAUGHT_AT},
        "not_measured": sum(1 for r in rows if r["role"] == DEFECT and r["caught_at"] == NOT_MEASURED),
        "not_tuned": _half([r for r in defects if written_before_checks(r.get("defect"))]),
        "tuned": _half([r for r in defects if not written_before_checks(r.get("defect"))]),
    }
