"""`replicate calibrate`: draws over seeds x numeric variants, each in its own process, recorded as
they finish; the measured block and where it belongs."""

from __future__ import annotations

import json
import statistics

import pytest

from replicate.calibrate import calibrate, plan_draws, record_location
from replicate.cli import main


@pytest.mark.parametrize("overrides, location", [
    (["model=yolov3"], "model.tiers.smoke.reference"),
    (["model=yolov3", "framework=torch"], "model.tiers.smoke.reference"),
    (["model=yolov3", "framework=tensorflow"], "model.tiers.smoke.framework_references.tensorflow"),
    (["model=faster_rcnn"], "model.tiers.smoke.reference"),
])
def test_the_block_is_recorded_under_the_framework_it_was_measured_on(overrides, location):
    assert record_location(overrides) == location


def test_each_draw_runs_under_its_numeric_variant_and_is_recorded(results_dir, tiny):
    overrides = ["model=yolov4", f"results_dir={results_dir}", *tiny]
    draws = plan_draws([0], ["default", "avx2"], [1, 2], crossed=True)
    block = calibrate(overrides, draws, cpus=2, echo=lambda line: None)
    record = json.loads((results_dir / "calibration" / "yolov4-torch.json").read_text())
    ran = record["draws"]
    # the child processes really ran the kernels asked for, with the thread count asked for
    assert ran["s0/default/t1"]["cpu_capability"] == "DEFAULT" and ran["s0/default/t1"]["num_threads"] == 1
    assert ran["s0/avx2/t2"]["cpu_capability"] == "AVX2" and ran["s0/avx2/t2"]["num_threads"] == 2
    finals = [ran[d.label]["final"] for d in draws]
    assert block["draws"] == pytest.approx(finals, rel=1e-4) and block["labels"] == [d.label for d in draws]
    assert block["value"] == pytest.approx(statistics.fmean(finals), rel=1e-4)
    assert len(block["early_draws"]) == 2 and "0.25" in block["curve"] and "0.25" in block["curve_spread"]
    # a second call finds every draw recorded and runs nothing
    lines: list[str] = []
    again = calibrate(overrides, draws, cpus=2, echo=lines.append)
    assert again["draws"] == block["draws"] and "2 already recorded" in lines[1] and "running 0" in lines[1]


@pytest.mark.parametrize("flag, value", [("--seeds", "0,x"), ("--threads", "0"), ("--threads", "a"),
                                         ("--variants", "avx9000")])
def test_bad_flags_exit_2_naming_the_flag(capsys, flag, value):
    assert main(["calibrate", "model=yolov4", flag, value]) == 2
    assert flag in capsys.readouterr().err


def test_draws_run_side_by_side_only_while_their_threads_fit():
    import threading
    import time

    from replicate.calibrate import Draw, run_within_cpus

    busy, peak, lock = [0], [0], threading.Lock()

    def run(draw: Draw) -> dict:
        with lock:
            busy[0] += draw.threads
            peak[0] = max(peak[0], busy[0])
        time.sleep(0.05)
        with lock:
            busy[0] -= draw.threads
        return {"final": float(draw.seed)}

    draws = plan_draws([0, 1, 2], ["default", "avx2"], [1, 2])
    done: list[str] = []
    run_within_cpus(draws, run, 2, lambda d, m: done.append(d.label))
    assert sorted(done) == sorted(d.label for d in draws)
    assert peak[0] == 2   # two 1-thread draws together, a 2-thread draw alone, never more
    busy[0] = peak[0] = 0
    run_within_cpus([Draw(0, "default", 4), Draw(1, "default", 1)], run, 2, lambda d, m: done.append(d.label))
    assert peak[0] == 4 and done[-2:] != []   # wider than the budget: it runs (alone), it is not starved


@pytest.mark.slow   # 30 s of replayed draws; each draw's numeric variant stays in the default run
def test_replaying_the_first_quarter_adds_the_drift_and_refuses_a_draw_it_does_not_retrace(results_dir, tiny):
    from replicate.calibrate import replay_early

    ref = "model.tiers.smoke.reference"
    labels = [f"s{seed}/default/t1" for seed in range(6)]
    base = ["model=yolov4", f"results_dir={results_dir}", *tiny, f"{ref}.labels=[{','.join(labels)}]",
            f"{ref}.draws=[1.0,1.1,1.2,1.0,1.1,1.2]", f"{ref}.early_draws=[]", f"{ref}.final_loss_draws=[]",
            f"{ref}.early_drift_draws=[]"]
    with pytest.raises(RuntimeError, match="replay of draw s0/default/t1 does not retrace it"):
        replay_early(base + [f"{ref}.early_loss_draws=[1.0,1.0,1.0,1.0,1.0,1.0]"], cpus=2, echo=lambda _: None)
    record = json.loads((results_dir / "calibration" / "yolov4-torch-early.json").read_text())["draws"]
    assert {record[label]["cpu_capability"] for label in labels} == {"DEFAULT"}
    losses = ",".join(str(record[label]["early_loss"]) for label in labels)
    lines: list[str] = []
    block = replay_early(base + [f"{ref}.early_loss_draws=[{losses}]"], cpus=2, echo=lines.append)
    assert "running 0" in lines[1]   # every replay was recorded: none runs again
    assert block["early_drift_draws"] == pytest.approx([record[label]["early_drift"] for label in labels], rel=1e-4)
    assert all(d > 0 for d in block["early_drift_draws"]) and "--early-only" in block["source"]
    assert block["labels"] == labels


@pytest.mark.parametrize("label", ["s1/avx2", "seed1/avx2/t1", "s1/avx2/tx"])
def test_a_malformed_draw_label_is_named(label):
    from replicate.calibrate import Draw

    assert Draw.from_label("s3/avx2/t2") == Draw(3, "avx2", 2)
    with pytest.raises(ValueError, match="is not s<seed>/<variant>/t<threads>"):
        Draw.from_label(label)


def test_the_metrics_a_tier_also_judges_are_recorded_per_draw(results_dir, tiny):
    """pix2pix's smoke tier judges its layout score beside L1: each draw records it, the block
    keeps one value per draw under ``also`` with its direction, and a draw recorded without it
    would be run again."""
    overrides = ["model=pix2pix", f"results_dir={results_dir}", *tiny]
    draws = plan_draws([0, 1], ["default"], [1], crossed=True)
    block = calibrate(overrides, draws, cpus=2, echo=lambda line: None)
    record = json.loads((results_dir / "calibration" / "pix2pix-torch.json").read_text())
    recorded = [record["draws"][d.label]["also"]["layout_class_iou"] for d in draws]
    assert block["also"]["layout_class_iou"]["direction"] == "higher"
    assert block["also"]["layout_class_iou"]["draws"] == pytest.approx(recorded, rel=1e-4)
    assert all(0 < v <= 1 for v in recorded)
    from replicate.calibrate import _load_record

    (results_dir / "old.json").write_text(json.dumps({"config_hash": "h", "draws": {
        "s0/default/t1": {k: v for k, v in record["draws"]["s0/default/t1"].items() if k != "also"}}}))
    assert _load_record(results_dir / "old.json", "h", also=["layout_class_iou"])["draws"] == {}
