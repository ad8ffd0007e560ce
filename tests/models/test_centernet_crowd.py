"""CenterNet's full tier trains on crowd regions as xingyizhou/CenterNet's ctdet sample does
(src/lib/datasets/sample/ctdet.py at 4c50fd3a46bdf63dbf2082c5cbb3458d39579e6c reads every
annotation of an image, crowd ones included): the product's training targets equal those of
tests/centernet_reference.py's restated ctdet item for the same draws, on a COCO-layout file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from replicate.config.compose import compose_config
from tests import centernet_reference as ref
from tests.coco_layout import COCO_IDS, write_coco_layout
from tests.models.test_centernet_reference import make_task

pytest.importorskip("cv2")


@pytest.mark.parametrize("scale,cx,cy,flip", [(64.0, 32.0, 24.0, False), (0.8 * 64, 20.0, 30.0, True),
                                              (1.3 * 64, 40.0, 20.0, True)])
def test_training_targets_equal_the_references_crowd_included(tmp_path, monkeypatch, scale, cx, cy, flip):
    monkeypatch.setenv("ZOO_DATA_ROOT", str(tmp_path / "data"))
    root = write_coco_layout(tmp_path / "data" / "coco2017")
    data = json.loads((root / "annotations" / "instances_train2017.json").read_text())
    task = make_task(tmp_path, "full")
    train = task.build_dataset("train", train=True)
    image_id = train.image_ids[0]
    anns = [a for a in data["annotations"] if a["image_id"] == image_id]   # getAnnIds' order: the file's
    assert [a["iscrowd"] for a in anns] == [0, 1]                          # the layout's crowd region
    augment = train.transforms
    train.transforms = lambda image, target: augment.apply(image, target, scale, cx, cy, flip)   # fixed draws
    _, _, enc = task.collate([train[0]])
    width = next(i for i in data["images"] if i["id"] == image_id)["width"]
    expected = ref.ctdet_train_targets(anns, width, {c: i for i, c in enumerate(COCO_IDS)}, 80, scale, cx, cy, flip)
    assert expected["reg_mask"].sum() == 2                                 # both boxes drawn
    np.testing.assert_array_equal(enc["mask"][0].numpy(), expected["reg_mask"])
    np.testing.assert_array_equal(enc["ind"][0].numpy(), expected["ind"])
    np.testing.assert_allclose(enc["wh"][0].numpy(), expected["wh"], atol=1e-4)
    np.testing.assert_allclose(enc["reg"][0].numpy(), expected["reg"], atol=1e-4)
    np.testing.assert_allclose(enc["hm"][0].numpy(), expected["hm"], atol=1e-6)


def test_only_the_full_tier_trains_on_crowd():
    model = compose_config(["model=centernet"]).model
    assert model.tiers.full.recipe.train_on_crowd and not model.tiers.smoke.recipe.train_on_crowd


def test_evaluation_data_still_leaves_crowd_out_of_targets(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_DATA_ROOT", str(tmp_path / "data"))
    write_coco_layout(tmp_path / "data" / "coco2017", val_images=2)
    val = make_task(tmp_path, "full").build_dataset("val", train=False)
    _, target = val[0]
    assert len(target["boxes"]) == 1 and torch.equal(target["iscrowd"], torch.zeros(1, dtype=torch.int64))
