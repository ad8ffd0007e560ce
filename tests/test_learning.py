"""Each registered model learns in the smoke tier, and its negative control does not PASS.

Minutes per model on 2 cores: marked slow (`make test-slow`). "Learns" means the trained metric
is at least 3x the untrained model's (for a lower-is-better metric such as pix2pix's L1: at most
a third of it) and the verdict against the recorded reference is PASS; with the training labels
(or pairs) shuffled, the verdict is not PASS.
"""

from __future__ import annotations

import pytest

from replicate.harness import run_one
from replicate.zoo.registry import registered_names

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("model", registered_names())
def test_smoke_tier_learns_and_shuffled_labels_do_not_pass(model, results_dir):
    common = [f"model={model}", f"results_dir={results_dir}", "scheduler=inline"]
    untrained = run_one([*common, "model.tiers.smoke.recipe.steps=1", "tier.compare_with=none",
                         "tier.early_check.enabled=false"], echo=print).jobs[0]
    trained = run_one(common, echo=print).jobs[0]
    shuffled = run_one([*common, "shuffle_labels=true"], echo=print).jobs[0]
    metric = trained["metric_name"]
    before, after = untrained["metrics"][metric], trained["metric_value"]
    print(f"{model}: {metric} untrained {before:.4g} -> trained {after:.4g}; shuffled {shuffled['verdict']} "
          f"{shuffled['metric_value']}")
    assert trained["verdict"] == "PASS", trained["failure_message"]
    if trained["compared_with"]["direction"] == "higher":
        assert after >= 3 * before and after > 0
    else:
        assert after <= before / 3
    assert shuffled["verdict"] != "PASS"
