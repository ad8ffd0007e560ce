"""Aspect-ratio grouping of training batches (the detection recipe's aspect_ratio_group_factor)."""

from __future__ import annotations

from replicate.harness import run_one
from replicate.runner.batch_order import epoch_permutation
from replicate.runner.grouping import GroupedBatches, aspect_ratio_groups


def test_groups_follow_the_references_log_bins():
    # factor 3: bin edges 2**linspace(-1, 1, 7) = 0.5 ... 2; portrait, square and landscape split.
    groups = aspect_ratio_groups([0.4, 0.75, 1.0, 1.33, 3.0], 3)
    assert groups == [0, 2, 4, 5, 7]
    # factor 0: the one bin edge 1.0, bisect_right (pytorch/vision group_by_aspect_ratio.py)
    assert aspect_ratio_groups([0.5, 1.0, 1.5], 0) == [0, 1, 1]


def test_every_batch_holds_one_group_and_no_index_twice():
    ratios = [0.6, 1.5] * 20
    groups = aspect_ratio_groups(ratios, 3)
    batches = list(GroupedBatches(epoch_permutation(len(ratios), 0, 0), groups, batch_size=4))
    assert len(batches) == 10
    for batch in batches:
        assert len({groups[i] for i in batch}) == 1 and len(batch) == 4
    flat = [i for b in batches for i in b]
    assert len(flat) == len(set(flat)) == 40


def test_a_recipe_with_grouping_trains_through_the_loop(results_dir, shapes_root, tiny):
    (row,) = run_one(["model=faster_rcnn", "scheduler=inline", f"results_dir={results_dir}",
                      f"datasets.shapes.root={shapes_root}", *tiny, "tier.compare_with=none",
                      "model.tiers.smoke.recipe.aspect_ratio_group_factor=3"], echo=lambda _: None).jobs
    assert row["verdict"] == "MEASURED" and row["steps_done"] == 4
