"""The visual check labels each box with its class name, read from the dataset's annotation file
(through an augmentation wrapper too), so a reengineer sees a label mix-up in the PNG."""

from __future__ import annotations

import json

import torch
from torch.utils.data import Dataset

from replicate.config.compose import compose_config
from replicate.data.coco_dataset import CocoDetection
from replicate.data.prepare import prepare_dataset
from replicate.visual import category_names, write_sample_grid
from replicate.zoo.registry import get_task_class
from replicate.zoo.task import TaskContext


class Wrapped(Dataset):
    """An augmentation set keeping its source under ``base`` (as the YOLO training set does)."""

    def __init__(self, base):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, index):
        return self.base[index]


def _shapes(shapes_root, tiny):
    cfg = compose_config(["model=faster_rcnn", f"datasets.shapes.root={shapes_root}", *tiny])
    prepare_dataset(cfg.datasets.shapes)
    return cfg


def test_category_names_come_from_the_annotation_file_through_wrappers(shapes_root, tiny):
    cfg = _shapes(shapes_root, tiny)
    split = cfg.datasets.shapes.splits.train
    base = CocoDetection(shapes_root, split.images, split.annotations)
    written = {c["id"]: c["name"] for c in json.loads((shapes_root / split.annotations).read_text())["categories"]}
    assert category_names(base) == written and set(written.values()) == {"circle", "square", "triangle"}
    assert category_names(Wrapped(Wrapped(base))) == written
    assert category_names([1, 2, 3]) is None   # no annotation file: ids are drawn


def test_boxes_are_drawn_with_their_class_names(shapes_root, tiny, tmp_path):
    cfg = _shapes(shapes_root, tiny)
    tier = cfg.model.tiers.smoke
    task = get_task_class("faster_rcnn")(TaskContext(cfg.model, tier.variant, "torch", tier, cfg.datasets.shapes,
                                                     int(tier.input_size), 0))
    dataset = task.build_dataset(tier.train_split, train=False)
    item = dataset[0]
    assert len(item[1]["labels"]) > 0
    named = task.draw_sample(item, category_names(dataset))
    ids = task.draw_sample(item)
    assert named.shape == ids.shape and not torch.equal(named, ids)   # other text, other pixels
    assert torch.equal(named, task.draw_sample(item, category_names(dataset)))
    path = write_sample_grid(task, dataset, tmp_path / "grid.png", count=4)
    assert path.stat().st_size > 0
