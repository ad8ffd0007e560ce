"""A suite id re-run skips finished jobs; ``--retry-failed`` runs the ERROR ones again (after the
cause is fixed), never the ones that passed or fell below."""

from __future__ import annotations

from replicate.cli import main
from replicate.harness import run_suite
from replicate.runner.torch_loop import TorchLoop
from replicate.store.results_store import ResultStore

ENTRIES = "suite.entries=[{model:yolov4,tier:smoke,hardware:cpu,seeds:[0,1]}]"


def test_retry_failed_runs_only_the_jobs_that_ended_error(results_dir, shapes_root, tiny, monkeypatch, capsys):
    common = [ENTRIES, "suite_id=retry", "scheduler=inline", f"results_dir={results_dir}",
              f"datasets.shapes.root={shapes_root}", *tiny, "tier.compare_with=none"]
    real_train = TorchLoop.train

    def broken_for_seed_1(self):   # e.g. a volume that was not mounted for one job
        if self.cfg.seed == 1:
            raise OSError("transient: /data not mounted")
        return real_train(self)

    monkeypatch.setattr(TorchLoop, "train", broken_for_seed_1)
    first = run_suite(common, echo=lambda _: None)
    assert sorted(r["verdict"] for r in first.jobs) == ["ERROR", "MEASURED"]
    monkeypatch.setattr(TorchLoop, "train", real_train)

    lines: list[str] = []
    again = run_suite(common, echo=lines.append)
    assert len(again.skipped) == 2 and any("--retry-failed" in line for line in lines)

    assert main(["suite", *common, "--retry-failed"]) == 1   # MEASURED rows: exit 1 by design
    assert "1 finished job(s) skipped" in capsys.readouterr().out   # the MEASURED one is not run again
    with ResultStore(f"sqlite:///{results_dir / 'zoo.db'}") as store:
        assert sorted(r["verdict"] for r in store.jobs(suite_id="retry")) == ["MEASURED", "MEASURED"]


def test_a_missing_dataset_makes_its_jobs_infra_and_the_others_run(results_dir, shapes_root, tiny, tmp_path, capsys):
    """A nightly on a data volume not yet filled: the jobs whose data is there still run; the
    others are INFRA naming the dataset (not exit 2 for the whole suite), and run again once
    the data is there. A single `run` of such a job still stops at once (exit 2)."""
    missing = tmp_path / "no-coco"
    entries = ("suite.entries=[{model:yolov4,tier:smoke,hardware:cpu,seeds:[0]},"
               "{model:faster_rcnn,tier:eval,hardware:cpu,seeds:[0]}]")
    common = [entries, "suite_id=half", "scheduler=inline", f"results_dir={results_dir}",
              f"datasets.shapes.root={shapes_root}", f"datasets.coco2017.root={missing}", *tiny,
              "tier.compare_with=none"]
    lines: list[str] = []
    result = run_suite(common, echo=lines.append)
    verdicts = {r["model"]: r for r in result.jobs}
    assert verdicts["yolov4"]["verdict"] == "MEASURED"
    assert verdicts["faster_rcnn"]["verdict"] == "INFRA"
    assert verdicts["faster_rcnn"]["failure_stage"] == "infrastructure"
    assert f"dataset coco2017 unavailable: {missing}" in verdicts["faster_rcnn"]["failure_message"]
    assert any("its jobs are INFRA, the others run" in line for line in lines)
    assert main(["run", "model=faster_rcnn", "tier=eval", "scheduler=inline", f"datasets.coco2017.root={missing}",
                 f"results_dir={results_dir}"]) == 2
    assert str(missing) in capsys.readouterr().err
