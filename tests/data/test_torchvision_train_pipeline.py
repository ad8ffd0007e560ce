"""The torchvision tiers' training pipeline against pytorch/vision's detection reference
(tests/torchvision_reference.py restates it) on a COCO-layout file: the training images it keeps
and the batches each of its data-parallel processes draws. The smoke tier keeps its own
pipeline (every image, global grouping off)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from replicate.config.compose import compose_config
from replicate.resolved import make_spec
from replicate.runner.batch_order import SEED_STRIDE, job_batch_order
from replicate.runner.worker import build_task
from tests import torchvision_reference as ref
from tests.coco_layout import COCO_IDS, write_coco_layout

TORCHVISION = ("faster_rcnn", "retinanet", "mask_rcnn")
# (width, height): ratios from 0.4 to 2.5, so factor 3's eight groups fill unevenly
SIZES = [(64, 48), (48, 80), (96, 64), (80, 80), (100, 40), (40, 100), (72, 64), (50, 60)]
EDGE_CASES = {   # image id -> its annotations' (bbox, iscrowd): what the reference's filter decides on
    9001: [([4.0, 4.0, 1.0, 20.0], 0), ([10.0, 10.0, 30.0, 0.5], 0)],   # every box 1 px or thinner: dropped
    9002: [([4.0, 4.0, 20.0, 20.0], 1)],                              # a crowd region only: kept
    9003: [([4.0, 4.0, 1.0, 1.0], 0), ([8.0, 8.0, 1.5, 1.5], 0)],      # one box just over 1 px: kept
    9004: [([4.0, 4.0, 30.0, 20.0], 0)],                              # an ordinary box: kept
}


def write_train_layout(root: Path, images: int = 45) -> Path:
    """write_coco_layout's COCO 2017 layout with ``images`` training images (the last without
    annotations) and the EDGE_CASES images added to the train file."""
    write_coco_layout(root, train_images=images, sizes=SIZES)
    path = root / "annotations" / "instances_train2017.json"
    data = json.loads(path.read_text())
    source = root / "train2017" / data["images"][0]["file_name"]
    for image_id, anns in EDGE_CASES.items():
        name = f"{image_id:012d}.jpg"
        shutil.copyfile(source, root / "train2017" / name)
        data["images"].append({"id": image_id, "file_name": name, "width": 64, "height": 48})
        for bbox, crowd in anns:
            data["annotations"].append({"id": 100_000 + len(data["annotations"]), "image_id": image_id,
                                        "category_id": COCO_IDS[3], "bbox": bbox, "area": bbox[2] * bbox[3],
                                        "iscrowd": crowd, "segmentation": [[4, 4, 8, 4, 8, 8]]})
    path.write_text(json.dumps(data))
    return path


def full_task(tmp_path: Path, model: str, monkeypatch, overrides: tuple[str, ...] = ()):
    monkeypatch.setenv("ZOO_DATA_ROOT", str(tmp_path / "data"))
    cfg = compose_config([f"model={model}", "tier=full", "tier.compare_with=none", f"results_dir={tmp_path}",
                          *overrides])
    return build_task(make_spec(cfg, None), cfg), cfg.model.tiers.full.recipe


@pytest.mark.parametrize("model", TORCHVISION)
def test_the_full_tier_trains_on_the_images_the_references_get_coco_keeps(tmp_path, monkeypatch, model):
    annotations = write_train_layout(tmp_path / "data" / "coco2017")
    task, _ = full_task(tmp_path, model, monkeypatch)
    train = task.build_dataset("train", train=True)
    expected = ref.kept_train_image_ids(annotations)
    assert train.image_ids == expected
    assert {9002, 9003, 9004} <= set(expected) and 9001 not in expected
    # The last generated image has no annotations: the reference drops it, evaluation keeps it.
    everything = sorted(image["id"] for image in json.loads(annotations.read_text())["images"])
    assert len(expected) == len(everything) - 2
    assert task.build_dataset("val", train=False).image_ids == sorted(
        image["id"] for image in json.loads((annotations.parent / "instances_val2017.json").read_text())["images"])
    # The crowd-only image trains with an empty target, as ConvertCocoPolysToMask leaves it.
    _, target = train[train.image_ids.index(9002)]
    assert target["boxes"].shape == (0, 4)


@pytest.mark.parametrize("model", TORCHVISION)
def test_the_smoke_tier_keeps_its_pipeline(model):
    recipe = compose_config([f"model={model}"]).model.tiers.smoke.recipe
    assert not recipe.skip_unannotated_images and recipe.sampler_processes is None
    assert recipe.aspect_ratio_group_factor is None


@pytest.mark.parametrize("seed", [0, 3])
def test_each_process_draws_the_references_grouped_batches(tmp_path, monkeypatch, seed):
    """Same permutations as the reference's samplers: its DistributedSampler seeded with the
    job's seed * SEED_STRIDE (the product's epoch seeds; for seed 0 the reference's own default,
    seed 0 + epoch), so the batches compare exactly."""
    annotations = write_train_layout(tmp_path / "data" / "coco2017")
    task, recipe = full_task(tmp_path, "faster_rcnn", monkeypatch)
    train = task.build_dataset("train", train=True)
    processes, per_process = recipe.sampler_processes, recipe.batch_size // recipe.sampler_processes
    assert (processes, per_process, recipe.aspect_ratio_group_factor) == (8, 2, 3)   # README: 8 GPUs x 2 images
    groups = ref.aspect_ratio_groups(annotations, train.image_ids, recipe.aspect_ratio_group_factor)
    assert len(set(groups)) >= 5
    order = job_batch_order(task, train, recipe, seed)
    for epoch in (0, 1):
        expected = ref.process_batches(len(train), groups, processes, per_process, seed * SEED_STRIDE, epoch)
        ours = order.epoch(epoch)
        assert len(ours) == len(expected[0]) == (-(-len(train) // processes)) // per_process
        for rank in range(processes):   # the loop's share of a global batch: batch[rank::world]
            assert [batch[rank::processes] for batch in ours] == expected[rank]
        for world in (1, 2, 4):         # fewer workers: whole batches of the processes rank mod world
            for rank in range(world):
                assert [sorted(batch[rank::world]) for batch in ours] == [
                    sorted(i for p in range(rank, processes, world) for i in expected[p][k]) for k in range(len(ours))]


def test_the_references_epoch_end_tops_up_groups_with_repeats():
    """A process whose share leaves partial groups still yields len // batch_size batches, the
    last ones completed from the group's earlier samples, as GroupedBatchSampler does."""
    from replicate.runner.grouping import GroupedBatches

    groups = [0, 2, 2, 0, 1, 2, 1, 2, 2, 0]
    sampler = [8, 3, 6, 5, 1, 4, 2, 7, 0, 9]
    ours = list(GroupedBatches(sampler, groups, 3))
    assert ours == ref.grouped_batch_sampler(sampler, groups, 3)
    # groups 1 and 2 end with two indices each; group 2's buffer restarted after its batch, so
    # it sits after group 1's in the reference's dict: the one batch to top up is group 1's
    # [6, 4], completed with its first sample, 6, again
    assert ours == [[8, 5, 1], [3, 0, 9], [6, 4, 6]]
