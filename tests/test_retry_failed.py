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
