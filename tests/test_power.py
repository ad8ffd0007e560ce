"""Where a selftest caught each defect and at what share of a run's cost (replicate.power): pure
functions of the pre-flight result, the smoke job's verdict and the clean control's wall time."""

from __future__ import annotations

import pytest

from replicate.jobs import ABOVE, BELOW, EARLY_ABORT, ERROR, INFRA, MEASURED, PASS
from replicate.power import (
    CONTROL,
    DEFECT,
    DURING_RUN,
    EARLY_CHECK,
    FINAL_VERDICT,
    MISSED,
    NOT_MEASURED,
    PREFLIGHT,
    SELFTEST_SEED,
    Catch,
    catch,
    cost_share,
    summarize,
)


def test_a_defect_the_preflight_catches_costs_the_checks_share_of_a_run():
    found = catch(None, caught_by_preflight=True, preflight_s=6.0, control_wall_s=120.0)
    assert found == Catch(True, PREFLIGHT, pytest.approx(0.05))


def test_the_preflight_wins_over_any_verdict_and_an_unknown_run_cost_leaves_the_share_open():
    assert catch(PASS, caught_by_preflight=True, preflight_s=6.0) == Catch(True, PREFLIGHT, None)


def test_an_early_abort_costs_the_time_spent_over_a_full_clean_run():
    found = catch(EARLY_ABORT, caught_by_preflight=False, job_wall_s=33.0, control_wall_s=120.0,
                  steps_done=125, steps_planned=500)
    assert found == Catch(True, EARLY_CHECK, pytest.approx(0.275))


def test_an_early_abort_without_a_control_falls_back_to_its_share_of_steps():
    found = catch(EARLY_ABORT, caught_by_preflight=False, job_wall_s=33.0, steps_done=125, steps_planned=500)
    assert found == Catch(True, EARLY_CHECK, 0.25)


@pytest.mark.parametrize("verdict", [BELOW, ABOVE, ERROR])
def test_a_final_verdict_costs_the_whole_run(verdict):
    assert catch(verdict, caught_by_preflight=False, job_wall_s=50.0, control_wall_s=120.0) == \
        Catch(True, FINAL_VERDICT, 1.0)


def test_an_error_before_the_last_step_costs_what_the_job_had_spent():
    """A check on the job's own path (the schedule, a reference setting) stopped it at step 10."""
    found = catch(ERROR, caught_by_preflight=False, job_wall_s=37.0, control_wall_s=370.0, steps_done=10,
                  steps_planned=600)
    assert found == Catch(True, DURING_RUN, 0.1)
    assert catch(ERROR, caught_by_preflight=False, steps_done=150, steps_planned=600) == Catch(True, DURING_RUN, 0.25)
    assert catch(ERROR, caught_by_preflight=False, job_wall_s=370.0, control_wall_s=370.0, steps_done=600,
                 steps_planned=600) == Catch(True, FINAL_VERDICT, 1.0)


@pytest.mark.parametrize("verdict", [PASS, MEASURED])
def test_a_verdict_that_flags_nothing_is_a_miss(verdict):
    assert catch(verdict, caught_by_preflight=False, job_wall_s=120.0, control_wall_s=120.0) == \
        Catch(False, MISSED, None)


@pytest.mark.parametrize("verdict", [INFRA, None])
def test_a_job_the_cluster_failed_measures_nothing(verdict):
    assert catch(verdict, caught_by_preflight=False) == Catch(False, NOT_MEASURED, None)


def test_cost_share_is_capped_at_a_whole_run():
    assert cost_share(200.0, 100.0) == 1.0 and cost_share(None, 100.0) is None and cost_share(5.0, 0.0) is None


def _row(role, verdict, flagged, caught_at=None, stage="training", share=None):
    return {"role": role, "verdict": verdict, "flagged": flagged, "caught_at": caught_at, "stage": stage,
            "cost_share": share}


def test_summary_counts_flagged_defects_passing_controls_and_the_worst_training_catch():
    rows = [
        _row(CONTROL, PASS, False), _row(CONTROL, BELOW, True), _row(CONTROL, INFRA, False),
        _row(DEFECT, None, True, PREFLIGHT, share=0.02),
        _row(DEFECT, EARLY_ABORT, True, EARLY_CHECK, share=0.27),
        _row(DEFECT, BELOW, True, FINAL_VERDICT, stage="data", share=1.0),
        _row(DEFECT, PASS, False, MISSED),
        _row(DEFECT, INFRA, False, NOT_MEASURED),
    ]
    summary = summarize(rows)
    assert (summary["flagged"], summary["defects"], summary["flagged_share"]) == (3, 4, 0.75)
    assert (summary["controls_pass"], summary["controls"], summary["controls_pass_share"]) == (1, 2, 0.5)
    assert summary["training_max_cost_share"] == 0.27     # the data-stage final verdict does not count
    assert summary["caught_at"][PREFLIGHT] == 1 and summary["caught_at"][MISSED] == 1
    assert summary["not_measured"] == 1


def test_an_empty_selftest_has_no_shares():
    summary = summarize([])
    assert summary["flagged_share"] is None and summary["controls_pass_share"] is None
    assert summary["training_max_cost_share"] is None


def test_the_selftest_seed_is_no_calibration_seed():
    """Controls are fresh draws: no reference, and no default calibration, uses the seed."""
    import replicate.calibrate as calibrate
    from replicate.config.compose import compose_config
    from replicate.config.conf_tree import group_options

    for model in group_options("model"):
        tiers = compose_config([f"model={model}"]).model.tiers
        for tier in tiers.values():
            for ref in [tier.reference, *tier.framework_references.values()]:
                if ref is not None:
                    assert SELFTEST_SEED not in ref.seeds, model
    defaults = getattr(calibrate, "DEFAULT_SEEDS", {})
    for seeds in (defaults.values() if isinstance(defaults, dict) else [defaults]):
        assert SELFTEST_SEED not in seeds


def test_the_summary_reports_the_defects_written_before_the_checks_apart(monkeypatch):
    """The power on defects nobody tuned the checks to is counted apart from the rest, by the
    catalogue's own record of when each was written."""
    import replicate.power as power

    blind = {"blind_a", "blind_b", "blind_c"}
    monkeypatch.setattr(power, "written_before_checks", lambda name: name in blind)
    rows = [{**_row(DEFECT, BELOW, True, FINAL_VERDICT), "defect": "blind_a"},
            {**_row(DEFECT, PASS, False, MISSED), "defect": "blind_b"},
            {**_row(DEFECT, INFRA, False, NOT_MEASURED), "defect": "blind_c"},   # not measured: left out
            {**_row(DEFECT, EARLY_ABORT, True, EARLY_CHECK, share=0.3), "defect": "old_one"}]
    summary = summarize(rows)
    assert summary["not_tuned"] == {"defects": 2, "flagged": 1, "flagged_share": 0.5}
    assert summary["tuned"] == {"defects": 1, "flagged": 1, "flagged_share": 1.0}


def test_the_catalogue_says_which_defects_were_written_before_the_checks():
    from replicate.power import written_before_checks

    assert not written_before_checks("lr_10x")            # written after seeing what the checks let through
    assert not written_before_checks("no_such_defect") and not written_before_checks(None)
    assert written_before_checks("score_thresh_from_demo")   # written blind, no check fitted to it since
    # written blind and missed; the input rule was then written with it in mind: tuned from then on
    assert not written_before_checks("discriminator_unconditioned")


def test_a_fitted_check_date_must_be_a_date():
    from replicate.defects.registry import register

    def hook(task, cfg):
        """A hook with its docstring: only the date is wrong."""

    with pytest.raises(ValueError, match="isoformat"):
        register("never_registered", ("pix2pix",), stage="model", type="model architecture/API misuse",
                 description="x", check_fitted_after="yesterday")(hook)
