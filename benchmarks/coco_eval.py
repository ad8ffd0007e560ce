"""COCO evaluation at val2017 scale: ``replicate evaluate`` against pycocotools on the same files.

Generates a ground truth shaped like val2017 (5,000 images, ~37k boxes over 80 categories) and
a detections file of 100 per image (500k; jittered true boxes and false positives), then runs
each evaluator in a process of its own on the same two files: its wall time, its peak resident
memory, and its 12 statistics. bbox at full scale; segm (RLE masks of polygons) on 1,000 images,
since pycocotools' mask IoU takes minutes at full scale. Targets: >= 5x pycocotools' speed,
statistics equal to 1e-6, peak memory no more than pycocotools'.

    python -m benchmarks.coco_eval [--images 5000] [--segm-images 1000]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

from benchmarks.ratio import Ratio, print_report

SPEED_TARGET = 5.0
STATS_TOLERANCE = 1e-6
MEMORY_TARGET = 1.0
BOXES_PER_IMAGE = 7.4      # val2017: 36,781 boxes over 5,000 images
DETECTIONS_PER_IMAGE = 100


def _polygon(x: float, y: float, w: float, h: float) -> list[float]:
    """A diamond inside the box: a mask that is not the box itself."""
    return [x + w / 2, y, x + w, y + h / 2, x + w / 2, y + h, x, y + h / 2]


def generate(folder: Path, images: int, segm: bool, seed: int = 0) -> tuple[Path, Path]:
    """Ground truth and detections files of ``images`` 640x480 images; their paths."""
    import pycocotools.mask as mask_utils

    rng = random.Random(seed)
    gt: dict[str, Any] = {"images": [], "annotations": [], "categories": [{"id": c, "name": f"c{c}"}
                                                                          for c in range(1, 81)]}
    detections = []
    for image_id in range(1, images + 1):
        gt["images"].append({"id": image_id, "width": 640, "height": 480, "file_name": f"{image_id:012d}.jpg"})
        boxes = []
        for _ in range(max(0, round(rng.gauss(BOXES_PER_IMAGE, 3)))):
            w, h = rng.uniform(8, 300), rng.uniform(8, 300)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            category = rng.randint(1, 80)
            boxes.append((x, y, w, h, category))
            annotation = {"id": len(gt["annotations"]) + 1, "image_id": image_id, "category_id": category,
                          "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0}
            if segm:
                annotation["segmentation"] = [_polygon(x, y, w, h)]
                annotation["area"] = w * h / 2
            gt["annotations"].append(annotation)
        for k in range(DETECTIONS_PER_IMAGE):
            if boxes and k < 2 * len(boxes):   # near a true box, sometimes with the wrong class
                x, y, w, h, category = boxes[k % len(boxes)]
                x, y = x + rng.gauss(0, 0.1 * w), y + rng.gauss(0, 0.1 * h)
                w, h = w * rng.uniform(0.8, 1.2), h * rng.uniform(0.8, 1.2)
                category = category if rng.random() < 0.8 else rng.randint(1, 80)
            else:
                w, h = rng.uniform(8, 200), rng.uniform(8, 200)
                x, y, category = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h), rng.randint(1, 80)
            detection = {"image_id": image_id, "category_id": category, "bbox": [x, y, w, h],
                         "score": round(rng.random(), 6)}
            if segm:
                rle = mask_utils.merge(mask_utils.frPyObjects([_polygon(x, y, w, h)], 480, 640))
                detection["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
            detections.append(detection)
    gt_path, dt_path = folder / "gt.json", folder / "dt.json"
    gt_path.write_text(json.dumps(gt))
    dt_path.write_text(json.dumps(detections))
    return gt_path, dt_path


# Each side runs as a child process and reports its own peak resident memory (ru_maxrss, KiB).
PYCOCOTOOLS = """
import json, resource, sys, time
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
began = time.perf_counter()
gt = COCO(sys.argv[1]); dt = gt.loadRes(sys.argv[2])
e = COCOeval(gt, dt, sys.argv[3]); e.evaluate(); e.accumulate(); e.summarize()
print(json.dumps({"seconds": time.perf_counter() - began, "stats": [float(s) for s in e.stats],
                  "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""
OURS = """
import json, resource, sys, time
from replicate.evaluation.coco import evaluate_files
began = time.perf_counter()
stats = evaluate_files(sys.argv[1], sys.argv[2], sys.argv[3])
print(json.dumps({"seconds": time.perf_counter() - began, "stats": list(stats),
                  "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def _run(script: str, gt: Path, dt: Path, iou_type: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", script, str(gt), str(dt), iou_type], capture_output=True, text=True,
                          check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_case(iou_type: str, images: int, echo: Callable[[str], None]) -> list[Ratio]:
    with tempfile.TemporaryDirectory(prefix="zoo-coco-") as tmp:
        gt, dt = generate(Path(tmp), images, segm=iou_type == "segm")
        ours = _run(OURS, gt, dt, iou_type)
        theirs = _run(PYCOCOTOOLS, gt, dt, iou_type)
    setting = f"{iou_type}, {images} images, {images * DETECTIONS_PER_IMAGE} detections"
    echo(f"  coco {setting}: ours {ours['seconds']:.1f}s, pycocotools {theirs['seconds']:.1f}s")
    difference = max(abs(a - b) for a, b in zip(ours["stats"], theirs["stats"]))
    ratios = [Ratio("coco", f"speed vs pycocotools ({setting})", theirs["seconds"] / ours["seconds"],
                    SPEED_TARGET, "higher", "x", f"{ours['seconds']:.1f}s vs {theirs['seconds']:.1f}s"),
              Ratio("coco", f"largest statistic difference ({iou_type})", difference, STATS_TOLERANCE, "lower", "",
                    "12 statistics, pycocotools' order")]
    ratios.append(Ratio("coco", f"peak memory vs pycocotools ({iou_type})", ours["peak_bytes"] / theirs["peak_bytes"],
                        MEMORY_TARGET, "lower", "x",
                        f"{ours['peak_bytes'] / 2**20:.0f} MiB vs {theirs['peak_bytes'] / 2**20:.0f} MiB"))
    return ratios


def measure(images: int = 5000, segm_images: int = 1000, echo: Callable[[str], None] = print) -> list[Ratio]:
    return measure_case("bbox", images, echo) + measure_case("segm", segm_images, echo)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--segm-images", type=int, default=1000)
    args = parser.parse_args(argv)
    ratios = measure(args.images, args.segm_images)
    return print_report(ratios)


if __name__ == "__main__":
    sys.exit(main())
