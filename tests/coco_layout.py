"""A small dataset laid out exactly as COCO 2017 (for tests: no real COCO on this machine).

``annotations/instances_{train,val}2017.json`` and ``{train,val}2017/*.jpg`` under ``root``, with
what real COCO has that a toy set would not: the 80 category ids with their gaps in 1..90 (12,
26, 29, 30, 45, 66, 68, 69, 71, 83 unused), crowd boxes (``iscrowd`` 1, RLE masks), an image
without annotations, and images of several aspect ratios; then the checksum manifest, as a lab's
``replicate`` volume holds it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

# COCO 2017's 80 category ids (instances_val2017.json): 1..90 without 12, 26, 29, 30, 45, 66, 68, 69, 71, 83
COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
SIZES = [(64, 48), (48, 80), (96, 64), (80, 80)]   # (width, height): landscape, portrait, wide, square


def _image(path: Path, size: tuple[int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=90)


def write_coco_layout(root: Path, val_images: int = 4, train_images: int = 2,
                      sizes: list[tuple[int, int]] = SIZES) -> Path:
    """Write the dataset under ``root`` and its manifest; returns ``root``. ``sizes``: the images'
    (width, height) in turn (benchmarks use COCO's own, e.g. 640 x 480)."""
    from pycocotools import mask as mask_utils

    from replicate.data.manifest import write_manifest

    categories = [{"id": i, "name": f"category-{i}", "supercategory": "thing"} for i in COCO_IDS]
    for split, count, offset in (("val2017", val_images, 0), ("train2017", train_images, 1000)):
        images, annotations = [], []
        for n in range(count):
            image_id = offset + 139 + n * 7          # sparse ids, as COCO's
            width, height = sizes[n % len(sizes)]
            name = f"{image_id:012d}.jpg"
            _image(root / split / name, (width, height), image_id)
            images.append({"id": image_id, "file_name": name, "width": width, "height": height})
            if n == count - 1:
                continue                              # an image without annotations
            for k in range(2):
                x, y, w, h = 4.0 + 8 * k, 6.0, width / 3, height / 3
                crowd = int(k == 1 and n == 0)        # one crowd region, with an RLE mask
                if crowd:
                    canvas = np.zeros((height, width), dtype=np.uint8, order="F")
                    canvas[int(y):int(y + h), int(x):int(x + w)] = 1
                    rle = mask_utils.encode(canvas)
                    segmentation = {"size": rle["size"], "counts": rle["counts"].decode()}
                else:
                    segmentation = [[x, y, x + w, y, x + w, y + h, x, y + h]]
                annotations.append({"id": len(annotations) + 1 + offset, "image_id": image_id,
                                    "category_id": COCO_IDS[(n * 13 + k * 29) % len(COCO_IDS)],
                                    "bbox": [x, y, w, h], "area": w * h, "iscrowd": crowd,
                                    "segmentation": segmentation})
        path = root / "annotations" / f"instances_{split}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    write_manifest(root)
    return root
