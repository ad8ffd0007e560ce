"""The CLI's read commands and COCO evaluation of a detections file, end to end."""

from __future__ import annotations

import json

import pytest

from replicate.cli import main
from replicate.zoo.registry import registered_names


def test_models_lists_every_registered_model_with_its_full_parameter_count(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["name"] for r in rows) == registered_names()
    frcnn = next(r for r in rows if r["name"] == "faster_rcnn")
    assert frcnn["trainable_params"] == 41_755_286
    assert frcnn["primary_claim"]["value"] == 37.0 and "torchvision" in frcnn["primary_claim"]["source"]


def _shapes_val(shapes_root, tiny):
    from omegaconf import OmegaConf

    from replicate.data.shapes import ensure_shapes

    size = {o.split("=")[0].split(".")[-1]: int(o.split("=")[1]) for o in tiny if o.startswith("datasets.shapes.")}
    cfg = OmegaConf.load("conf/data/shapes.yaml")
    cfg.root = str(shapes_root)
    cfg.update(size)
    return ensure_shapes(cfg) / "val.json"


def test_evaluate_names_twelve_stats_in_percent_and_perfect_detections_score_100(shapes_root, tiny, tmp_path,
                                                                                 capsys):
    gt = _shapes_val(shapes_root, tiny)
    anns = json.loads(gt.read_text())["annotations"]
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
            for a in anns]
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(dets))
    assert main(["evaluate", "--annotations", str(gt), "--detections", str(path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert len(stats) == 12 and list(stats)[:3] == ["bbox_AP", "bbox_AP50", "bbox_AP75"]
    assert stats["bbox_AP"] == pytest.approx(100.0) and stats["bbox_AP50"] == pytest.approx(100.0)
    dets[0]["bbox"] = [0, 0, 1, 1]   # one box off: below 100, printed with its name
    path.write_text(json.dumps(dets))
    assert main(["evaluate", "--annotations", str(gt), "--detections", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 12 and lines[0].startswith("bbox_AP ") and float(lines[0].split()[1]) < 100


def test_evaluate_missing_file_exits_2_naming_it(tmp_path, capsys):
    missing = tmp_path / "nope.json"
    assert main(["evaluate", "--annotations", str(missing), "--detections", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and len(err.strip().splitlines()) == 1


def test_run_then_history_shows_the_job(results_dir, shapes_root, tiny, capsys):
    common = [f"results_dir={results_dir}", f"datasets.shapes.root={shapes_root}", *tiny]
    code = main(["run", "model=faster_rcnn", "scheduler=inline", "tier.compare_with=none", "suite_id=cli-run", "--json",
                 *common])
    run = json.loads(capsys.readouterr().out)
    # Nothing to compare with: MEASURED, which is not a PASS, so the run does not exit 0.
    assert code == 1 and run["verdicts"] == {"MEASURED": 1}
    (job,) = run["jobs"]
    assert job["steps_done"] == 4 and job["verdict"] == "MEASURED" and job["failure_stage"] is None
    assert job["environment"]["torch"] and job["environment"]["config_hash"] == job["config_hash"]
    assert job["train_s"] > 0 and job["wall_s"] >= job["train_s"] + job["eval_s"]
    assert main(["history", "--model", "faster_rcnn", "--json", *common]) == 2   # a job's keys: not the store's
    assert "only results_dir= and store=" in capsys.readouterr().err
    assert main(["history", "--model", "faster_rcnn", "--json", f"results_dir={results_dir}"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["job_id"] for r in rows] == [job["job_id"]]
    # the suite id `history suite=...` points to (--suite-id) filters; the table says suite and date
    common, (stored,) = [f"results_dir={results_dir}"], rows
    assert main(["history", "--suite-id", stored["suite_id"], *common]) == 0
    table = capsys.readouterr().out
    assert "when" in table and stored["suite_id"] in table and stored["created_at"][:10] in table
    assert main(["history", "suite=smoke", *common]) == 2 and "--suite-id ID" in capsys.readouterr().err
    assert main(["history", "--suite-id", "no-such-suite", *common]) == 2
    assert "no job of suite 'no-such-suite'" in capsys.readouterr().err


REFERENCE = {"kind": "reference", "value": 12.0, "low": 9.0, "high": 15.0}
NOTHING = {"kind": "none", "value": None, "low": None, "high": None}


def _suite_result(*verdicts: str):
    """A finished suite of one single-seed group per verdict (a MEASURED one had nothing to compare with)."""
    from replicate.harness import SuiteResult

    rows = [{"model": f"m{i}", "framework": "torch", "tier": "smoke", "hardware": "cpu", "seed": 0, "seeds": [0],
             "verdict": v, "metric_name": "bbox_AP", "metric_value": 12.0, "mean": 12.0, "std": None,
             "compared_with": NOTHING if v == "MEASURED" else REFERENCE, "wall_s": 1.0, "cost": 0.0}
            for i, v in enumerate(verdicts)]
    return SuiteResult("night", jobs=rows, groups=[dict(r) for r in rows])


@pytest.mark.parametrize("verdicts, code, line", [
    (("PASS", "PASS"), 0, "verdicts (2 model groups): 2 PASS"),
    (("PASS", "MEASURED"), 1, "verdicts (2 model groups): 1 PASS, 1 MEASURED (nothing to compare with)"),
    (("MEASURED",), 1, "verdicts (1 model group): 1 MEASURED (nothing to compare with)"),
    (("PASS", "MEASURED", "BELOW"), 1, "verdicts (3 model groups): 1 PASS, 1 MEASURED (nothing to compare with), "
                                       "1 BELOW"),
])
def test_suite_exits_0_only_when_every_verdict_is_pass_and_counts_measured_apart(verdicts, code, line, monkeypatch,
                                                                                 capsys):
    import replicate.harness

    monkeypatch.setattr(replicate.harness, "run_suite", lambda overrides, echo, **_: _suite_result(*verdicts))
    assert main(["suite", "suite=smoke"]) == code
    out = capsys.readouterr().out
    assert line in out.splitlines()
    # The jobs table names what each row is compared with; a smoke reference is never a "claim".
    assert "compared with [band]" in out and "claim" not in out
    assert ("reference (this implementation)" in out) == (verdicts.count("MEASURED") < len(verdicts))
    assert ("MEASURED" in out) == ("MEASURED" in verdicts)
    assert _suite_result(*verdicts).all_pass == (code == 0)
    # --allow-fail keeps its meaning: 0 whenever the suite completed, whatever the verdicts.
    assert main(["suite", "suite=smoke", "--allow-fail"]) == 0
    capsys.readouterr()
    assert main(["suite", "suite=smoke", "--json"]) == code
    counts = json.loads(capsys.readouterr().out)["verdicts"]
    assert counts == {v: verdicts.count(v) for v in verdicts} and sum(counts.values()) == len(verdicts)


def test_missing_real_dataset_exits_2_naming_the_path(tmp_path, capsys):
    missing = tmp_path / "no-coco"
    (tmp_path / "w.pth").write_bytes(b"weights")   # the checkpoint exists: the dataset is what is missing
    code = main(["run", "model=faster_rcnn", "tier=eval", "scheduler=inline", f"datasets.coco2017.root={missing}",
                 f"results_dir={tmp_path / 'results'}", f"checkpoint={tmp_path / 'w.pth'}"])
    err = capsys.readouterr().err
    assert code == 2 and str(missing) in err and "datasets.coco2017.root" in err


def test_corrupt_annotation_file_exits_2_naming_it(tmp_path, capsys):
    from replicate.data.manifest import write_manifest

    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    ann = root / "annotations" / "instances_val2017.json"
    ann.write_text("{}")
    (root / "annotations" / "instances_train2017.json").write_text("{}")
    write_manifest(root)
    ann.write_text('{"images": []}')  # changed after the manifest was written
    code = main(["run", "model=faster_rcnn", "tier=eval", "scheduler=inline", f"datasets.coco2017.root={root}",
                 f"results_dir={tmp_path / 'results'}"])
    err = capsys.readouterr().err
    assert code == 2 and "instances_val2017.json" in err


@pytest.mark.parametrize("command", ["history", "report", "cost", "run model=yolov4"])
def test_malformed_store_url_exits_2_naming_the_key(command, capsys):
    # Hydra wraps the store's typed error; every command must still exit 2 with one line.
    assert main([*command.split(), "store.url=not-a-url"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: store.url:")


@pytest.mark.parametrize("command", ["history", "report", "cost"])
def test_read_only_commands_on_a_missing_store_exit_2_and_create_nothing(command, tmp_path, capsys):
    results = tmp_path / "typo"
    assert main([command, f"results_dir={results}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no store at" in err[0] and str(results / "zoo.db") in err[0], err
    assert not results.exists()          # neither the file nor its folder


@pytest.mark.parametrize("command, given, flag", [("report", "suite=smoke-20261130", "--suite-id ID"),
                                                  ("cost", "suite=smoke", "--suite-id ID"),
                                                  ("history", "model=yolov3", "--model NAME")])
def test_read_commands_take_flags_not_config_groups(command, given, flag, capsys, tmp_path):
    """suite= picks a suite config and model= a model config: on a read command they would be
    silently taken for a suite id or a filter. The error names the flag meant."""
    assert main([command, given, f"results_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0] and err[0].startswith(f"error: {given.split('=')[0]}:"), err


@pytest.mark.parametrize("override, entry_key", [("seed=7", "seeds"), ("model=yolov4", "model"),
                                                 ("tier=full", "tier"), ("hardware=h100x1", "hardware")])
def test_a_per_entry_key_given_to_suite_exits_2_naming_it(override, entry_key, results_dir, capsys):
    """A suite's entries set each job's model, tier, hardware and seeds: the same key on the command
    line used to be dropped without a word."""
    results_dir.mkdir()
    assert main(["suite", "suite=smoke", override, f"results_dir={results_dir}"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    key = override.split("=")[0]
    assert line.startswith(f"error: {key}: {override} does not apply to a suite") and f"entries[*].{entry_key}" in line
    assert not (results_dir / "zoo.db").exists()   # refused before anything is recorded


def test_keys_that_apply_to_every_job_of_a_suite_are_still_taken(results_dir):
    from replicate.config.compose import compose_config
    from replicate.plan import plan_suite

    overrides = ["suite=smoke", "num_threads=2", "framework=torch", "suite_id=x"]
    suite_id, jobs = plan_suite(compose_config(overrides), overrides)
    assert suite_id == "x" and {job.cfg.num_threads for job in jobs} == {2}
    assert {job.spec.framework for job in jobs} == {"torch"}
