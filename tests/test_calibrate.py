"""`replicate calibrate`: measured reference blocks and where they belong."""

from __future__ import annotations

import statistics

import pytest

from replicate.calibrate import calibrate, record_location
from replicate.cli import main


@pytest.mark.parametrize("overrides, location", [
    (["model=yolov3"], "model.tiers.smoke.reference"),
    (["model=yolov3", "framework=torch"], "model.tiers.smoke.reference"),
    (["model=yolov3", "framework=tensorflow"], "model.tiers.smoke.framework_references.tensorflow"),
    (["model=faster_rcnn"], "model.tiers.smoke.reference"),
])
def test_the_block_is_recorded_under_the_framework_it_was_measured_on(overrides, location):
    assert record_location(overrides) == location


def test_calibrate_measures_every_seed_and_derives_the_band(results_dir, tiny):
    overrides = ["model=yolov4", "scheduler=inline", f"results_dir={results_dir}", *tiny]
    block = calibrate(overrides, [0, 1], echo=lambda line: None)
    finals = [float(v) for v in block["source"].rsplit("per seed: ", 1)[1].split(", ")]
    assert block["seeds"] == [0, 1] and len(finals) == 2
    assert block["value"] == pytest.approx(statistics.fmean(finals), abs=1e-3)
    assert block["spread"] == pytest.approx(statistics.stdev(finals), abs=1e-3)
    assert 0 < block["tolerance"] <= 0.5 and "0.25" in block["curve"]


def test_seeds_that_are_not_integers_exit_2_naming_the_flag(capsys):
    assert main(["calibrate", "model=yolov4", "--seeds", "0,x"]) == 2
    assert "--seeds" in capsys.readouterr().err
