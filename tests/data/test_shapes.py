"""Tests of the synthetic shapes writer and the checksum manifest (real files, no mocks)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image
from pycocotools import mask as mask_util
from pycocotools.coco import COCO

from replicate.data.manifest import read_manifest, verify_manifest, write_manifest
from replicate.data.shapes import LABEL_COLOURS, PHOTO_COLOURS, ensure_shapes
from replicate.errors import ConfigError, DataError

CLASSES = ["circle", "square", "triangle"]


def small_cfg(root: Path, **overrides) -> dict:
    cfg = {"root": str(root), "image_size": 64, "num_train": 16, "num_val": 8,
           "max_objects": 3, "classes": list(CLASSES), "seed": 7}
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory) -> Path:
    return ensure_shapes(small_cfg(tmp_path_factory.mktemp("shapes") / "shapes"))


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_generation_is_deterministic(tmp_path):
    first = ensure_shapes(small_cfg(tmp_path / "a"))
    second = ensure_shapes(small_cfg(tmp_path / "b"))
    assert verify_manifest(first) == verify_manifest(second)
    assert (first / "train" / "00003.png").read_bytes() == \
        (second / "train" / "00003.png").read_bytes()


def test_accepts_omegaconf_node(tmp_path):
    root = ensure_shapes(OmegaConf.create({"data": small_cfg(tmp_path / "s")}).data)
    assert verify_manifest(root) == verify_manifest(ensure_shapes(small_cfg(tmp_path / "t")))


def test_second_call_does_not_rewrite(tmp_path):
    root = ensure_shapes(small_cfg(tmp_path / "s"))
    before = _mtimes(root)
    time.sleep(0.01)
    assert ensure_shapes(small_cfg(tmp_path / "s")) == root
    assert _mtimes(root) == before


def test_regenerates_when_params_change(tmp_path):
    root = ensure_shapes(small_cfg(tmp_path / "s"))
    old_hash = verify_manifest(root)
    ensure_shapes(small_cfg(tmp_path / "s", seed=8, num_train=5))
    assert verify_manifest(root) != old_hash
    assert json.loads((root / "params.json").read_text())["seed"] == 8
    assert len(list((root / "train").glob("*.png"))) == 5
    assert len(list((root / "pairs" / "train").glob("*_label.png"))) == 5
    assert not list(tmp_path.glob(".s.*")), "temp/old directories left behind"


def test_regenerates_when_a_file_is_corrupted(tmp_path):
    root = ensure_shapes(small_cfg(tmp_path / "s"))
    good = (root / "val" / "00001.png").read_bytes()
    (root / "val" / "00001.png").write_bytes(b"garbage")
    ensure_shapes(small_cfg(tmp_path / "s"))
    assert (root / "val" / "00001.png").read_bytes() == good
    verify_manifest(root)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_crash_leftovers_are_cleaned(tmp_path):
    host = socket.gethostname().replace("-", "_")
    crashed = tmp_path / f".s.tmp-{host}-{_dead_pid()}-0badf00d"
    (crashed / "train").mkdir(parents=True)
    (crashed / "train" / "00000.png").write_bytes(b"half")
    abandoned = tmp_path / ".s.tmp-otherhost-12345-0badf00e"
    abandoned.mkdir()
    os.utime(abandoned, (time.time() - 7 * 3600,) * 2)
    alive = tmp_path / f".s.tmp-{host}-{os.getpid()}-0badf00f"  # a concurrent generator
    alive.mkdir()
    # A half-written root (no manifest) as a crash of a non-atomic writer would leave it.
    (tmp_path / "s" / "train").mkdir(parents=True)
    root = ensure_shapes(small_cfg(tmp_path / "s"))
    verify_manifest(root)
    assert not crashed.exists() and not abandoned.exists()
    assert alive.exists()


def test_invalid_config_names_the_key(tmp_path):
    with pytest.raises(ConfigError) as err:
        ensure_shapes(small_cfg(tmp_path / "s", classes=["circle", "hexagon"]))
    assert err.value.key == "data.classes"
    cfg = small_cfg(tmp_path / "s")
    del cfg["max_objects"]
    with pytest.raises(ConfigError) as err:
        ensure_shapes(cfg)
    assert err.value.key == "data.max_objects"
    assert not (tmp_path / "s").exists()


def test_coco_annotations_are_valid(shapes_root):
    coco = COCO(str(shapes_root / "train.json"))
    assert len(coco.imgs) == 16
    assert sorted(c["name"] for c in coco.cats.values()) == CLASSES
    for ann in coco.anns.values():
        info = coco.imgs[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w <= info["width"] and y + h <= info["height"]
        assert ann["iscrowd"] == 0 and isinstance(ann["segmentation"]["counts"], str)
        mask = mask_util.decode(ann["segmentation"])  # compressed RLE with str counts
        assert mask.shape == (info["height"], info["width"])
        assert ann["area"] == mask.sum() > 0
        ys, xs = np.nonzero(mask)
        tight = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert np.allclose(tight, ann["bbox"], atol=1)
        # Objects are mostly visible, and no smaller than ~15% of the side squared.
        assert ann["area"] >= 0.7 * 0.5 * (0.15 * 64) ** 2
    per_image = [len(coco.getAnnIds(imgIds=[i])) for i in coco.imgs]
    assert min(per_image) >= 1 and max(per_image) <= 3 and len(set(per_image)) > 1
    assert {a["category_id"] for a in coco.anns.values()} == {1, 2, 3}


def test_colours_vary(shapes_root):
    coco = COCO(str(shapes_root / "train.json"))
    object_colours, background_colours = [], []
    for info in coco.imgs.values():
        pixels = np.asarray(Image.open(shapes_root / "train" / info["file_name"]), np.float32)
        union = np.zeros(pixels.shape[:2], bool)
        for ann in coco.imgToAnns[info["id"]]:
            mask = coco.annToMask(ann).astype(bool)
            object_colours.append(pixels[mask].mean(axis=0))
            union |= mask
        background_colours.append(pixels[~union].mean(axis=0))
        assert pixels[~union].std(axis=0).min() > 1.0  # textured, not flat
    assert np.std(object_colours, axis=0).min() > 30
    assert np.std(background_colours, axis=0).min() > 20


def test_pairs_match_the_coco_scene(shapes_root):
    coco = COCO(str(shapes_root / "val.json"))
    names = {c["id"]: c["name"] for c in coco.cats.values()}
    pairs = shapes_root / "pairs" / "val"
    assert len(list(pairs.glob("*_label.png"))) == 8
    for info in coco.imgs.values():
        stem = Path(info["file_name"]).stem
        photo = np.asarray(Image.open(pairs / f"{stem}_image.png").convert("RGB")).astype(float)
        label = np.asarray(Image.open(pairs / f"{stem}_label.png").convert("RGB"))
        expected = np.zeros_like(label)
        expected[:] = LABEL_COLOURS["background"]
        for ann in coco.imgToAnns[info["id"]]:
            expected[coco.annToMask(ann).astype(bool)] = LABEL_COLOURS[names[ann["category_id"]]]
        assert np.array_equal(label, expected)
        # The pair photo is the label's class "material" plus texture: label -> photo is learnable.
        for name, colour in LABEL_COLOURS.items():
            where = (label == colour).all(-1)
            if where.any():
                assert np.abs(photo[where].mean(0) - PHOTO_COLOURS[name]).max() < 3


def test_default_config_is_fast(tmp_path):
    cfg = small_cfg(tmp_path / "s", image_size=128, num_train=256, num_val=64, seed=1234)
    start = time.perf_counter()
    root = ensure_shapes(cfg)
    assert time.perf_counter() - start < 15
    assert len(read_manifest(root)["files"]) > 900
    start = time.perf_counter()
    verify_manifest(root)
    assert time.perf_counter() - start < 1.0


# --- manifest -------------------------------------------------------------------------------


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha")
    (root / "sub" / "b.bin").write_bytes(bytes(range(256)))
    write_manifest(root)
    return root


def test_manifest_records_every_file(tmp_path):
    root = _tree(tmp_path)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["algorithm"] == "sha256"
    assert sorted(manifest["files"]) == ["a.txt", "sub/b.bin"]
    assert len(verify_manifest(root)) == 64


def test_manifest_detects_modified_file(tmp_path):
    root = _tree(tmp_path)
    (root / "sub" / "b.bin").write_bytes(b"tampered")
    with pytest.raises(DataError, match="b.bin") as err:
        verify_manifest(root)
    assert err.value.path == str(root / "sub" / "b.bin")
    verify_manifest(root, files=["a.txt"])  # a subset that excludes it still verifies


def test_manifest_detects_deleted_file(tmp_path):
    root = _tree(tmp_path)
    (root / "a.txt").unlink()
    with pytest.raises(DataError, match="a.txt.*missing"):
        verify_manifest(root)
    with pytest.raises(DataError, match="a.txt"):
        verify_manifest(root, files=[root / "a.txt"])


def test_manifest_missing_or_unlisted(tmp_path):
    root = _tree(tmp_path)
    with pytest.raises(DataError, match="c.txt.*not listed"):
        verify_manifest(root, files=["c.txt"])
    (root / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="manifest.json"):
        verify_manifest(root)
    (root / "manifest.json").unlink()
    with pytest.raises(DataError, match="manifest.json.*missing"):
        verify_manifest(root)


def test_manifest_hash_is_canonical(tmp_path):
    root = _tree(tmp_path)
    digest = verify_manifest(root)
    manifest = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps(manifest, indent=8))
    assert verify_manifest(root) == digest
    (root / "a.txt").write_text("beta")
    write_manifest(root, files=[root / "a.txt", "sub/b.bin"])
    assert verify_manifest(root) != digest


def test_unwritable_root_is_a_data_error(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(DataError, match="file"):
        ensure_shapes(small_cfg(tmp_path / "file" / "shapes"))
