"""Tests of CocoDetection, the flip transform and PairedImages on a small generated shapes set."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from replicate.data.coco_dataset import (
    CocoDetection,
    Compose,
    RandomHorizontalFlip,
    derangement,
    detection_collate,
)
from replicate.data.paired_dataset import PairedImages
from replicate.data.shapes import LABEL_COLOURS, ensure_shapes
from replicate.errors import ConfigError, DataError

SIZE = 64


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory) -> Path:
    cfg = {"root": str(tmp_path_factory.mktemp("data") / "shapes"), "image_size": SIZE,
           "num_train": 16, "num_val": 8, "max_objects": 3,
           "classes": ["circle", "square", "triangle"], "seed": 3}
    return ensure_shapes(cfg)


@pytest.fixture
def copy_root(shapes_root, tmp_path) -> Path:
    """A private copy for tests that damage files."""
    return Path(shutil.copytree(shapes_root, tmp_path / "shapes"))


def _mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    boxes = []
    for mask in masks:
        ys, xs = torch.nonzero(mask, as_tuple=True)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


def _signature(target: dict) -> tuple:
    return (tuple(target["labels"].tolist()), tuple(target["boxes"].flatten().tolist()))


def test_coco_items_have_torchvision_format(shapes_root):
    ds = CocoDetection(shapes_root, "train", "train.json", with_masks=True)
    assert len(ds) == 16 and ds.image_ids == sorted(ds.coco.imgs)
    assert ds.annotation_file == shapes_root / "train.json"
    for index in range(len(ds)):
        image, target = ds[index]
        assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.float32
        assert 0.0 <= image.min() and image.max() <= 1.0 and image.std() > 0.01
        n = len(ds.coco.getAnnIds(imgIds=[ds.image_ids[index]]))
        assert target["boxes"].shape == (n, 4) and target["boxes"].dtype == torch.float32
        assert target["labels"].dtype == torch.int64 and set(target["labels"].tolist()) <= {1, 2, 3}
        assert target["masks"].shape == (n, SIZE, SIZE) and target["masks"].dtype == torch.uint8
        assert target["image_id"] == ds.image_ids[index] and isinstance(target["image_id"], int)
        assert target["iscrowd"].tolist() == [0] * n
        assert torch.allclose(target["area"], target["masks"].flatten(1).sum(1).float())
        boxes = target["boxes"]
        assert (boxes[:, 2:] > boxes[:, :2]).all() and boxes.min() >= 0 and boxes.max() <= SIZE
        assert torch.allclose(_mask_boxes(target["masks"]), boxes, atol=1)


def test_loader_with_collate_and_transforms(shapes_root):
    flip = Compose([RandomHorizontalFlip(0.5, generator=0)])
    ds = CocoDetection(shapes_root, "val", "val.json", transforms=flip)
    images, targets = next(iter(DataLoader(ds, batch_size=4, collate_fn=detection_collate)))
    assert isinstance(images, list) and len(images) == 4 and len(targets) == 4
    assert "masks" not in targets[0]


def test_crowd_and_filtered_categories_are_skipped(copy_root):
    ann_file = copy_root / "train.json"
    data = json.loads(ann_file.read_text())
    first = data["annotations"][0]
    first["iscrowd"] = 1
    ann_file.write_text(json.dumps(data))
    ds = CocoDetection(copy_root, "train", "train.json")
    index = ds.image_ids.index(first["image_id"])
    expected = sum(1 for a in data["annotations"] if a["image_id"] == first["image_id"]) - 1
    assert len(ds[index][1]["boxes"]) == expected
    only = CocoDetection(copy_root, "train", "train.json", category_ids=[2])
    assert all(set(t["labels"].tolist()) <= {2} for _, t in (only[i] for i in range(len(only))))
    with pytest.raises(ConfigError):
        CocoDetection(copy_root, "train", "train.json", category_ids=[42])


def test_missing_image_is_named(copy_root):
    (copy_root / "train" / "00005.png").unlink()
    with pytest.raises(DataError, match="00005.png") as err:
        CocoDetection(copy_root, "train", "train.json")
    assert err.value.path == str(copy_root / "train" / "00005.png")


def test_missing_or_invalid_annotations(copy_root):
    with pytest.raises(DataError, match="nope.json"):
        CocoDetection(copy_root, "train", "nope.json")
    (copy_root / "bad.json").write_text("{truncated")
    with pytest.raises(DataError, match="bad.json"):
        CocoDetection(copy_root, "train", "bad.json")


@pytest.mark.parametrize("bbox", [[1, 2, 3], ["a", 1, 2, 3], [1, 2, float("nan"), 4], None, [1, 2, True, 4]])
def test_an_annotation_with_a_bad_bbox_is_a_data_error_naming_file_and_annotation(copy_root, bbox):
    ann_file = copy_root / "train.json"
    data = json.loads(ann_file.read_text())
    data["annotations"][3]["bbox"] = bbox
    ann_file.write_text(json.dumps(data))
    with pytest.raises(DataError, match=f"annotation {data['annotations'][3]['id']!r}: bbox") as err:
        CocoDetection(copy_root, "train", "train.json")
    assert err.value.path == str(ann_file)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_image_is_named(copy_root, damage):
    path = copy_root / "train" / "00002.png"
    data = path.read_bytes()
    path.write_bytes(b"\x89PNG not really" if damage == "garbage" else data[: len(data) // 2])
    ds = CocoDetection(copy_root, "train", "train.json")
    ds[1]  # an intact image still loads
    with pytest.raises(DataError, match="00002.png"):
        ds[ds.image_ids.index(3)]


def test_shuffled_labels_are_a_derangement_of_targets(shapes_root):
    plain = CocoDetection(shapes_root, "train", "train.json")
    shuffled = CocoDetection(shapes_root, "train", "train.json", shuffle_labels_seed=11)
    again = CocoDetection(shapes_root, "train", "train.json", shuffle_labels_seed=11)
    original = [_signature(plain[i][1]) for i in range(len(plain))]
    permuted = [_signature(shuffled[i][1]) for i in range(len(shuffled))]
    assert permuted == [_signature(again[i][1]) for i in range(len(again))]
    assert sum(a != b for a, b in zip(original, permuted)) >= 0.8 * len(original)
    assert Counter(original) == Counter(permuted)
    assert torch.equal(shuffled[0][0], plain[0][0])  # only the targets move
    assert shuffled[0][1]["image_id"] == plain[0][1]["image_id"]


def test_derangement_has_no_fixed_points():
    for n in (2, 3, 10, 101):
        perm = derangement(n, seed=n)
        assert sorted(perm) == list(range(n))
        assert all(i != p for i, p in enumerate(perm))
        assert perm == derangement(n, seed=n)
    assert derangement(50, 1) != derangement(50, 2)


def test_flip_moves_boxes_with_the_pixels(shapes_root):
    ds = CocoDetection(shapes_root, "train", "train.json", with_masks=True)
    image, target = ds[0]
    flipped, ftarget = RandomHorizontalFlip(p=1.0)(image, target)
    assert torch.equal(flipped, image.flip(-1))
    assert torch.equal(ftarget["masks"], target["masks"].flip(-1))
    assert torch.allclose(_mask_boxes(ftarget["masks"]), ftarget["boxes"], atol=1)
    assert not torch.allclose(ftarget["boxes"], target["boxes"])
    assert torch.equal(ftarget["labels"], target["labels"])
    assert torch.equal(target["masks"], ds[0][1]["masks"])  # the input was not mutated
    same, starget = RandomHorizontalFlip(p=0.0)(image, target)
    assert same is image and starget is target


def test_flip_draws_are_seeded(shapes_root):
    image = torch.arange(6.0).reshape(1, 1, 6).expand(3, 2, 6)
    target = {"boxes": torch.tensor([[0.0, 0.0, 2.0, 1.0]])}

    def draws(seed):
        flip = RandomHorizontalFlip(0.5, generator=seed)
        return [flip(image, target)[1]["boxes"][0, 0].item() for _ in range(32)]
    assert draws(5) == draws(5)
    assert set(draws(5)) == {0.0, 4.0}


def test_paired_separate_files(shapes_root):
    ds = PairedImages(shapes_root, "pairs/train")
    coco = CocoDetection(shapes_root, "train", "train.json")
    assert len(ds) == 16 and not ds.aligned
    palette = {tuple(2 * np.array(c) / 255 - 1) for c in LABEL_COLOURS.values()}
    for index in (0, 7):
        label, photo = ds[index]
        assert label.shape == photo.shape == (3, SIZE, SIZE)
        assert label.dtype == photo.dtype == torch.float32
        assert -1 <= photo.min() and photo.max() <= 1
        stored = np.asarray(Image.open(shapes_root / "pairs" / "train" / f"{index:05d}_image.png").convert("RGB"))
        assert torch.allclose(photo, torch.from_numpy(stored).permute(2, 0, 1).float() / 127.5 - 1, atol=1e-6)
        assert photo.shape[-2:] == coco[index][0].shape[-2:]
        colours = {tuple(c) for c in label.flatten(1).T.tolist()}
        assert colours <= palette and len(colours) >= 2
    small_label, small_photo = PairedImages(shapes_root, "pairs/train", size=32)[0]
    assert small_label.shape == small_photo.shape == (3, 32, 32)
    assert {tuple(c) for c in small_label.flatten(1).T.tolist()} <= palette


def _write_aligned(shapes_root: Path, folder: Path, suffix: str) -> None:
    folder.mkdir(parents=True)
    for k in range(4):
        label = Image.open(shapes_root / "pairs" / "val" / f"{k:05d}_label.png")
        photo = Image.open(shapes_root / "pairs" / "val" / f"{k:05d}_image.png")
        both = Image.new("RGB", (2 * SIZE, SIZE))
        both.paste(photo, (0, 0))  # pix2pix layout: photo (A) left, label (B) right
        both.paste(label, (SIZE, 0))
        both.save(folder / f"{k}{suffix}")


def test_paired_aligned_format(shapes_root, tmp_path):
    _write_aligned(shapes_root, tmp_path / "aligned" / "val", ".png")
    separate = PairedImages(shapes_root, "pairs/val")
    aligned = PairedImages(tmp_path / "aligned", "val")
    assert aligned.aligned and len(aligned) == 4
    for k in range(4):
        assert torch.equal(aligned[k][0], separate[k][0])
        assert torch.equal(aligned[k][1], separate[k][1])
    swapped = PairedImages(tmp_path / "aligned", "val", label_side="left")
    assert torch.equal(swapped[0][0], separate[0][1])
    _write_aligned(shapes_root, tmp_path / "jpg" / "val", ".jpg")
    label, photo = PairedImages(tmp_path / "jpg", "val", size=16)[2]
    assert label.shape == photo.shape == (3, 16, 16)
    with pytest.raises(ConfigError):
        PairedImages(tmp_path / "aligned", "val", label_side="top")


def test_paired_shuffle_is_a_derangement(shapes_root):
    plain = PairedImages(shapes_root, "pairs/train")
    shuffled = PairedImages(shapes_root, "pairs/train", shuffle_pairs_seed=4)
    photos = [plain[i][1] for i in range(len(plain))]
    for index in range(len(shuffled)):
        label, photo = shuffled[index]
        assert torch.equal(label, plain[index][0])
        assert not torch.equal(photo, photos[index])
        assert any(torch.equal(photo, p) for p in photos)
    again = PairedImages(shapes_root, "pairs/train", shuffle_pairs_seed=4)
    assert torch.equal(again[3][1], shuffled[3][1])


def test_paired_errors(copy_root, tmp_path):
    with pytest.raises(DataError, match="missing"):
        PairedImages(copy_root, "pairs/test")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no "):
        PairedImages(tmp_path, "empty")
    (copy_root / "pairs" / "train" / "00004_image.png").unlink()
    with pytest.raises(DataError, match="00004_image.png"):
        PairedImages(copy_root, "pairs/train")
    (copy_root / "pairs" / "val" / "00001_label.png").write_bytes(b"corrupt")
    ds = PairedImages(copy_root, "pairs/val")
    with pytest.raises(DataError, match="00001_label.png"):
        ds[1]
