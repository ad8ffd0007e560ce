"""`replicate check` passes for every registered model (parametrized over the registry)."""

from __future__ import annotations

import pytest

from models.registry import get_task_class, registered_names
from replicate.check import run_check


@pytest.mark.parametrize("model", registered_names())
def test_check_passes_for_every_registered_model(model, results_dir, shapes_root, tiny):
    data = [o for o in tiny if o.startswith("datasets.")]
    report = run_check([f"model={model}", f"results_dir={results_dir}", f"datasets.shapes.root={shapes_root}",
                        *data, "tier.compare_with=none"], echo=print, visual=True)
    failed = [c for c in report.checks if not c["ok"]]
    assert not failed, failed
    assert {c["check"] for c in report.checks} >= {"config", "params", "shapes", "gradients", "overfit", "visual"}
    if len(get_task_class(model).frameworks) > 1:  # torch vs TensorFlow differential (or why it was skipped)
        assert "differential" in {c["check"] for c in report.checks}
    assert (results_dir / "check" / f"{model}_samples.png").stat().st_size > 0
