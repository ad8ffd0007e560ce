"""The benchmark suite runs: every benchmark on small sizes, its figures against their targets."""

from __future__ import annotations

import json

import pytest

from benchmarks.ratio import Ratio, markdown_table


def test_a_figure_passes_only_on_the_good_side_of_its_target():
    assert Ratio("b", "lower is better", 1.01, 1.02, "lower").ok
    assert not Ratio("b", "lower is better", 1.03, 1.02, "lower").ok
    assert Ratio("b", "higher is better", 5.0, 5.0, "higher").ok
    assert not Ratio("b", "higher is better", 4.9, 5.0, "higher").ok
    table = markdown_table([Ratio("history", "cost", 2.5, 2.0, "lower", "s", "3650 jobs")])
    assert "| history | cost | 2.5s | <= 2s | NO | 3650 jobs |" in table


def test_an_unknown_benchmark_is_exit_2_naming_it(capsys):
    from benchmarks.__main__ import main

    assert main(["--only", "harness,nope"]) == 2
    assert "'nope'" in capsys.readouterr().err


def test_a_year_of_history_is_written_through_the_record_path_and_read_by_every_reader(tmp_path):
    from benchmarks.year_of_history import measure_store
    from replicate.store.results_store import ResultStore

    url = f"sqlite:///{tmp_path / 'zoo.db'}"
    ratios = measure_store(url, "sqlite", tmp_path, nights=3, echo=lambda _: None)
    with ResultStore(url) as store:
        assert len(store.jobs()) == 30 and len(store.suites()) == 3
        assert {g["model"] for g in store.groups(store.suites()[0]["suite_id"])} >= {"yolov4", "pix2pix"}
    names = [r.name for r in ratios]
    assert any(n.startswith("history --model yolov4") for n in names)
    assert any(n.startswith("report --suite-id") for n in names) and any("largest page" in n for n in names)
    assert all(r.value > 0 for r in ratios)


@pytest.mark.slow   # the same year on SQLite stays in the default run
def test_the_year_of_history_runs_on_postgresql(postgres, tmp_path):
    """Every reader through the CLI on a PostgreSQL URL (its = ? & survive the override)."""
    from benchmarks.year_of_history import measure_store
    from replicate.store.results_store import ResultStore

    url = postgres.create("year_test")
    ratios = measure_store(url, "postgresql", tmp_path, nights=2, echo=lambda _: None)
    with ResultStore(url) as store:
        assert len(store.jobs()) == 20 and len(store.suites()) == 2
    assert len([r for r in ratios if r.unit == "s"]) == 5 and all(r.value > 0 for r in ratios)


def test_a_reader_that_fails_fails_the_benchmark():
    from benchmarks.year_of_history import _timed

    with pytest.raises(RuntimeError, match="history exited 2"):
        _timed("history", lambda: 2)
    assert _timed("history", lambda: 0) >= 0


# A timing ratio, however wide its margin, belongs outside the default run on a shared machine
# (`make test-slow`): the README's test command must stay green on a loaded 2-core VM.
@pytest.mark.slow
def test_the_harness_overhead_is_a_ratio_of_both_loops_and_sees_an_injected_overhead():
    """Each run in a process of its own; a harness made to busy-wait three times as long as its
    step (300% overhead, 4x ideally) must show well above 1x, so the figure cannot pass whatever
    the harness costs. The 1.4 bound leaves a margin of almost 3x, which a loaded machine's noise
    (0.744 read for an ideal 0.5 at 100%, issue 29) stays inside."""
    from benchmarks.harness_overhead import TARGET, ratio_for
    from benchmarks.isolated import ratio_of_minima

    assert ratio_of_minima([2.0, 1.0, 3.0], [1.5, 4.0]) == 1.5
    tiny = ["datasets.shapes.num_train=16", "datasets.shapes.num_val=8"]
    plain = ratio_for("yolov4", steps=6, repeats=1, overrides=tiny, echo=lambda _: None)
    assert plain.value > 0 and plain.target == TARGET and "fastest of 2 each" in plain.detail
    slowed = ratio_for("yolov4", steps=6, repeats=1, overrides=tiny, echo=lambda _: None, inject=3.0)
    assert slowed.value > 1.4 and not slowed.ok and "300% injected" in slowed.name


@pytest.mark.slow   # about 1 minute: three fresh processes each import TensorFlow and trace the step
def test_the_tensorflow_build_has_a_bare_loop_of_its_own():
    from benchmarks.harness_overhead import ratio_for

    tiny = ["datasets.shapes.num_train=16", "datasets.shapes.num_val=8"]
    ratio = ratio_for("yolov3", steps=3, repeats=1, overrides=tiny, echo=lambda _: None, framework="tensorflow")
    assert ratio.value > 0 and "(yolov3/tf, 3 steps)" in ratio.name


def test_the_gpu_script_runs_dry_on_a_cpu_and_writes_its_json(tmp_path):
    from benchmarks.gpu_throughput import measure

    out = tmp_path / "gpu.json"
    ratios = measure(dry_run=True, models=("yolov3", "pix2pix"), out=str(out), echo=lambda _: None)
    assert all(r.ok for r in ratios), [r.detail for r in ratios]
    rows = {row["model"]: row for row in json.loads(out.read_text())["models"]}
    assert rows["yolov3"]["train_images_per_s_fp32"] > 0 and rows["yolov3"]["eval_images_per_s"] > 0
    assert rows["yolov3"]["forward_gflops_per_image"] > 0 and rows["yolov3"]["mfu_fp32"] is None   # no GPU peak
    assert rows["pix2pix"]["train_images_per_s_amp"] > 0 and "published" in rows["pix2pix"]


def test_models_past_the_time_limit_are_skipped_not_run(tmp_path):
    from benchmarks.gpu_throughput import measure

    ratios = measure(dry_run=True, models=("yolov3", "yolov4"), time_limit=0.0, out=str(tmp_path / "g.json"),
                     echo=lambda _: None)
    assert all(r.value == 0.0 and "time limit" in r.detail and not r.ok for r in ratios)


def test_the_coco_benchmark_compares_both_evaluators_on_the_same_files():
    from benchmarks.coco_eval import measure_case

    ratios = {r.name.split(" (")[0]: r for r in measure_case("segm", 20, echo=lambda _: None)}
    assert ratios["largest statistic difference"].ok, ratios["largest statistic difference"]
    assert ratios["speed vs pycocotools"].value > 0 and ratios["peak memory vs pycocotools"].value > 0


@pytest.mark.slow   # a minute of jobs run twice
def test_the_scheduling_benchmark_times_the_same_jobs_both_ways(tiny):
    """In a process of its own: it starts and stops local Rays, which must not touch this session's."""
    import subprocess
    import sys

    code = ("import json; from benchmarks.scheduling import measure; "
            f"print(json.dumps([r.to_dict() for r in measure(models=('yolov4', 'yolov3'), extra={tiny!r}, "
            "echo=lambda _: None)]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    speedup, fresh, reused, start = json.loads(proc.stdout.strip().splitlines()[-1])
    assert speedup["value"] > 0 and "serial" in speedup["detail"] and "yolov4, yolov3" in speedup["name"]
    assert "fresh worker" in fresh["name"] and "reused worker" in reused["name"]
    assert all(row["value"] > 0 and "of work" in row["detail"] for row in (fresh, reused))
    assert fresh["target"] == reused["target"] == start["target"] == 0.05 and "once per suite" in start["name"]


def test_the_gpu_scaling_script_composes_its_jobs_and_refuses_a_machine_without_the_gpus(tmp_path):
    """benchmarks/data_parallel.py --gpus N cannot run here: what it runs is checked instead (the
    full variant at the paper's input size on a GPU profile), and its refusal without N GPUs."""
    import torch

    from benchmarks.data_parallel import _job, gpu_overrides, main

    for model, size in (("yolov4", 608), ("faster_rcnn", 800)):
        job = _job(tmp_path, 50, model, gpu_overrides(model, 64))
        tier = job.cfg.model.tiers.smoke
        assert (tier.variant, tier.input_size, tier.recipe.batch_size) == ("full", size, 64)
        assert job.hardware.accelerator == "gpu" and job.hardware.count == 1
    if torch.cuda.device_count() < 8:
        with pytest.raises(SystemExit, match="--gpus 8: torch sees"):
            main(["--gpus", "8"])


def _eval_loop(model, tmp_path, monkeypatch, images=2, input_size=128):
    """An eval-tier loop on a COCO layout at COCO's image sizes, set up as the benchmark sets it."""
    from benchmarks.eval_throughput import build_loop, configure, keep_every_detection, write_data

    data_root = write_data(tmp_path / "data", images)
    monkeypatch.setenv("ZOO_DATA_ROOT", data_root)
    loop = build_loop(configure(model, data_root, str(tmp_path / "results"), input_size))
    keep_every_detection(loop.model)
    return loop


def test_torchvisions_reference_loop_writes_the_same_coco_results_as_the_harness(tmp_path, monkeypatch):
    """The baseline does the work the harness does: Mask R-CNN's boxes, scores and RLE masks from
    the reference's encoding equal the evaluator's, 100 per image at score threshold 0 (the
    evaluator sets aside those on COCO's 11 unused ids, as COCOeval ignores them)."""
    from benchmarks import reference_eval_loops
    from tests.coco_layout import COCO_IDS

    # no worker processes here: a test session that has run TensorFlow must not fork
    monkeypatch.setitem(reference_eval_loops.TORCHVISION_LOADER, "num_workers", 0)
    loop = _eval_loop("mask_rcnn", tmp_path, monkeypatch)
    evaluator = loop.task.build_evaluator(loop.tier.eval_split)
    assert loop.predict_into(evaluator) == 2
    images, every = reference_eval_loops.reference_loop(loop.cfg, loop)()
    bare = [e for e in every if e["category_id"] in COCO_IDS]
    masks, boxes = evaluator._results["segm"], evaluator._results["bbox"]
    assert images == 2 and len(every) == 200 and len(bare) == len(masks) == len(boxes) > 100
    key = lambda e: (e["image_id"], round(e["score"], 5))   # noqa: E731
    for mask, box, theirs in zip(sorted(masks, key=key), sorted(boxes, key=key), sorted(bare, key=key)):
        assert mask["category_id"] == box["category_id"] == theirs["category_id"]
        assert mask["segmentation"] == theirs["segmentation"]
        assert box["bbox"] == pytest.approx(theirs["bbox"], abs=1e-3)


@pytest.mark.parametrize("model", ["centernet", "yolov3"])
def test_the_other_reference_loops_detect_on_every_image_in_coco_ids(model, tmp_path, monkeypatch):
    from benchmarks import reference_eval_loops
    from tests.coco_layout import COCO_IDS

    for loader in (reference_eval_loops.CENTERNET_LOADER, reference_eval_loops.DARKNET_LOADER):
        monkeypatch.setitem(loader, "num_workers", 0)   # no forking in a session that ran TensorFlow
    loop = _eval_loop(model, tmp_path, monkeypatch)
    images, results = reference_eval_loops.reference_loop(loop.cfg, loop)()
    assert images == 2 and {r["image_id"] for r in results} == {139, 146}
    assert {r["category_id"] for r in results} <= set(COCO_IDS)
    assert all(len(r["bbox"]) == 4 and 0.0 <= r["score"] <= 1.0 for r in results)
    if model == "yolov3":   # print_cocos clips to the image; CenterNet's random sizes may be negative
        assert all(r["bbox"][2] >= 0 and r["bbox"][3] >= 0 for r in results)


# A timing ratio, however wide its margin, belongs outside the default run on a shared machine
# (`make test-slow`): the README's test command must stay green on a loaded 2-core VM.
@pytest.mark.slow
def test_the_eval_throughput_sees_an_injected_overhead(tmp_path):
    """A harness made to busy-wait three times as long as each batch takes (300% overhead, 0.25x
    ideally) must read well below 1x: the figure cannot pass whatever the harness costs. At 100%
    (0.5x ideally) a loaded 2-core machine read 0.744 against the 0.7 bound (issue 29); at 300%
    the bound is almost 3x the ideal, a margin that noise of that size stays inside."""
    from benchmarks.eval_throughput import TARGET, ratio_for, write_data

    slowed = ratio_for("faster_rcnn", write_data(tmp_path, 2), input_size=128, repeats=1, echo=lambda _: None,
                       inject=3.0)
    assert slowed.value < 0.7 and not slowed.ok and slowed.target == TARGET and "300% injected" in slowed.name


def test_the_eval_throughput_refuses_a_model_without_an_eval_tier(capsys):
    from benchmarks.eval_throughput import main

    assert main(["--model", "pix2pix"]) == 2
    assert "'pix2pix' has no eval tier" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:
        main(["--images", "0"])
    assert stopped.value.code == 2 and "--images: 0 must be >= 1" in capsys.readouterr().err
