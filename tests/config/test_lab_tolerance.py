"""The lab's 1-3% rule (``lab.tolerance_range``): a claim's tolerance inside it, or the claim says why."""

from __future__ import annotations

import pytest

from replicate.cli import main
from replicate.config.compose import compose_config
from replicate.errors import ConfigError
from replicate.resolved import config_hash

REASON = "model.claims.0.tolerance_reason='the zoo prints whole points'"


def _refused(argv: list[str], capsys) -> str:
    """The CLI's one-line refusal (exit 2) of ``argv``, before anything runs.

    A missing checkpoint rides along: validation refuses it after the claims, so a config the
    rule let through stops there, naming ``checkpoint``, instead of training a job.
    """
    code = main([*argv, "checkpoint=/nonexistent/lab-tolerance-sentinel.pt"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("tolerance", ["0.05", "0.005"])
def test_a_relative_tolerance_outside_the_range_without_a_reason_exits_2_naming_it(tolerance, capsys):
    err = _refused(["check", "model=faster_rcnn", f"model.claims.0.tolerance={tolerance}"], capsys)
    assert err.startswith(f"error: model.claims[0].tolerance: {tolerance} is outside the lab's range [0.01, 0.03]"), err
    assert "model.claims[0].tolerance_reason" in err


def test_a_stated_reason_admits_a_tolerance_outside_the_range():
    cfg = compose_config(["model=faster_rcnn", "model.claims.0.tolerance=0.05", REASON])
    assert cfg.model.claims[0].tolerance == 0.05
    assert cfg.model.claims[0].tolerance_reason == "the zoo prints whole points"


def test_a_blank_reason_is_no_reason(capsys):
    err = _refused(["run", "model=faster_rcnn", "model.claims.1.tolerance=0.05",
                    "model.claims.1.tolerance_reason=' '"], capsys)
    assert "model.claims[1].tolerance: 0.05 is outside" in err


def test_the_range_is_the_labs_config_both_ways(capsys):
    wider = ["model=faster_rcnn", "model.claims.0.tolerance=0.05", "lab.tolerance_range=[0.01,0.05]"]
    assert compose_config(wider).model.claims[0].tolerance == 0.05
    # narrowed, the packaged claims at the default 0.02 fall outside it
    err = _refused(["run", "model=faster_rcnn", "lab.tolerance_range=[0.01,0.015]"], capsys)
    assert "model.claims[0].tolerance: 0.02 is outside the lab's range [0.01, 0.015]" in err


def test_the_lab_range_is_not_part_of_the_config_hash():
    # it decides which configs are admitted, never what a job computes: widening it reruns nothing
    assert (config_hash(compose_config(["model=faster_rcnn", "lab.tolerance_range=[0.01,0.05]"]))
            == config_hash(compose_config(["model=faster_rcnn"])))


@pytest.mark.parametrize("index", [0, 3])   # a claim of the model, and one of the instrument
def test_an_absolute_tolerance_always_states_why(index, capsys):
    err = _refused(["run", "model=pix2pix", f"model.claims.{index}.tolerance_reason=null"], capsys)
    assert f"model.claims[{index}].tolerance: an absolute tolerance (0.01) departs from" in err
    assert f"model.claims[{index}].tolerance_reason" in err


def test_every_pix2pix_claim_states_why_its_tolerance_is_absolute():
    claims = compose_config(["model=pix2pix", "tier.compare_with=none"]).model.claims
    assert {c.tolerance_kind for c in claims} == {"absolute"}
    assert all("two decimals" in c.tolerance_reason for c in claims)


def test_an_absolute_tolerance_keeps_the_outer_bound_even_with_a_reason(capsys):
    # 0.1 around pix2pix's class IoU of 0.17 is a band of +-59%, wider than any relative claim may have
    err = _refused(["run", "model=pix2pix", "model.claims.2.tolerance=0.1"], capsys)
    assert "model.claims[2].tolerance: 0.1 is more than 0.5 of the value 0.17" in err


@pytest.mark.parametrize("bounds, expected", [
    ("[0.03,0.01]", "[0.03, 0.01] must have 0 < low <= high <= 0.5"),
    ("[-0.01,0.03]", "[-0.01, 0.03] must have 0 < low"),
    ("[0,0.03]", "[0, 0.03] must have 0 < low"),
    ("[0.01,0.7]", "[0.01, 0.7] must have 0 < low <= high <= 0.5"),
    ("[0.02]", "must be two numbers, [low, high]"),
    ("[0.01,0.02,0.03]", "must be two numbers, [low, high]"),
])
def test_a_bad_lab_range_exits_2_naming_it(bounds, expected, capsys):
    err = _refused(["run", "model=faster_rcnn", f"lab.tolerance_range={bounds}"], capsys)
    assert err.startswith("error: lab.tolerance_range: ") and expected in err, err


def test_a_lab_range_that_is_not_numbers_exits_2_naming_it(capsys):
    err = _refused(["run", "model=faster_rcnn", "lab.tolerance_range=[low,0.03]"], capsys)
    assert err.startswith("error: lab.tolerance_range"), err
    with pytest.raises(ConfigError) as raised:
        compose_config(["model=faster_rcnn", "lab.tolerance_range=0.02"])
    assert raised.value.key.startswith("lab.tolerance_range")


def test_models_json_shows_each_judged_claims_band_and_why_it_departs():
    from replicate.catalog import model_rows

    rows = {r["name"]: {t["tier"]: t for t in r["tier_details"]} for r in model_rows()}
    frcnn = rows["faster_rcnn"]["eval"]["compared_with"]
    assert (frcnn["tolerance"], frcnn["tolerance_kind"], frcnn["tolerance_reason"]) == (0.02, "relative", None)
    pix2pix = rows["pix2pix"]["full"]["compared_with"]
    for claim in [pix2pix, *pix2pix["also"], *pix2pix["instrument"]]:
        assert (claim["tolerance"], claim["tolerance_kind"]) == (0.01, "absolute")
        assert "two decimals" in claim["tolerance_reason"]
