"""GPU check: each eval tier in fp32 and in amp on the same images - its metric, its images/s and
how far amp moves the detections - so a lab chooses a tier's ``precision`` on numbers.

Per model, each precision through the product's own path: ``compose_config(..., precision=P)``,
the TorchLoop set up as a job sets it up (data checked, weights loaded) and ``predict_into`` over
the images, timed after a few untimed warm-up batches (cuDNN autotuning), then the evaluator's
scoring. The loop decides the arithmetic as a job does (fp16 autocast only for amp on CUDA: on a
CPU both runs are fp32, identical); the row records what it ran.

Data and weights: with ``--data-root`` (default $ZOO_DATA_ROOT) holding COCO's val2017 and a
tier's released file under checkpoints/, the first ``--images`` of val2017 (the annotation file's
order) become a COCO root of their own (images linked, annotations of those images only, its
manifest), so the metric is the released model's on them. Otherwise a COCO-layout split at COCO's
image sizes (tests/coco_layout.py; its small ones with --dry-run) and the builder's random weights
with every detection kept (benchmarks/eval_throughput.py): the metric is then no model's, but the
images/s and the fp32-amp agreement (for each fp32 detection, its best IoU with an amp detection
of the same class) still measure what amp changes. Writes --out (JSON) and prints a table.

    python scripts/gpu_check/precision_ab.py [--models ...] [--images 300] [--hardware h100x1] [--out F]
    python scripts/gpu_check/precision_ab.py --dry-run    # a CPU, seconds: the script cannot rot
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODELS = ("faster_rcnn", "mask_rcnn", "retinanet", "centernet", "yolov3", "yolov4")
DRY_RUN_MODELS = ("faster_rcnn", "centernet")
PRECISIONS = ("fp32", "amp")
DRY_RUN_INPUT_SIZE = 128   # the torchvision detectors' min_size on a CPU (the others keep their tier's)


def real_subset(data_root: Path, images: int, into: Path) -> Optional[Path]:
    """The first ``images`` of the real val2017 as a COCO root of their own under ``into``; None
    when ``data_root`` holds no val2017."""
    source = data_root / "coco2017"
    annotations = source / "annotations" / "instances_val2017.json"
    if not annotations.is_file():
        return None
    from replicate.data.manifest import write_manifest

    gt = json.loads(annotations.read_text())
    kept = gt["images"][:images]
    ids = {image["id"] for image in kept}
    root = into / "coco2017"
    (root / "val2017").mkdir(parents=True)
    (root / "train2017").mkdir()
    for image in kept:
        os.symlink(source / "val2017" / image["file_name"], root / "val2017" / image["file_name"])
    subset = {**gt, "images": kept, "annotations": [a for a in gt["annotations"] if a["image_id"] in ids]}
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(subset))
    empty = {"images": [], "annotations": [], "categories": gt["categories"]}
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(empty))
    write_manifest(root)
    return into


def configure(model: str, precision: str, args: argparse.Namespace, data_root: Path, results_dir: Path,
              checkpoints: Optional[Path]) -> Any:
    from benchmarks.eval_throughput import RESIZABLE
    from replicate.config.compose import compose_config

    os.environ["ZOO_DATA_ROOT"] = str(data_root)   # the dataset config reads its root from it
    overrides = [f"model={model}", "tier=eval", f"hardware={args.hardware}", "scheduler=inline", "logger=none",
                 f"results_dir={results_dir}", f"precision={precision}"]
    overrides.append(f"model.tiers.eval.released.directory={checkpoints}" if checkpoints
                     else "model.tiers.eval.released=null")
    if args.input_size and model in RESIZABLE:
        overrides.append(f"model.tiers.eval.input_size={args.input_size}")
    return compose_config(overrides)


class Recorder:
    """Hands each batch to the tier's evaluator and keeps every image's boxes, scores and labels
    (on the CPU) for the fp32-amp comparison."""

    def __init__(self, evaluator: Any):
        self.evaluator = evaluator
        self.detections: dict[int, tuple[Any, Any, Any]] = {}

    def update(self, predictions: list[dict]) -> None:
        if self.evaluator is not None:
            self.evaluator.update(predictions)
        for p in predictions:
            self.detections[int(p["image_id"])] = (p["boxes"].float().cpu(), p["scores"].float().cpu(),
                                                   p["labels"].cpu())


def measure(cfg: Any, warmup: int, random_weights: bool) -> tuple[dict[str, Any], dict]:
    import torch

    from benchmarks.eval_throughput import build_loop, keep_every_detection
    from replicate.verdict import target_for

    loop = build_loop(cfg)
    if random_weights:
        keep_every_detection(loop.model)
    cuda = loop.device.type == "cuda"
    loop.predict_into(Recorder(None), warmup)   # untimed: cuDNN autotuning, the allocator, the loader
    recorder = Recorder(loop.task.build_evaluator(loop.tier.eval_split))   # reads the ground truth: untimed
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    images = loop.predict_into(recorder)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    metrics = {k: float(v) for k, v in recorder.evaluator.compute().items()}
    metric = target_for(cfg, loop.task.ctx.variant).metric
    return {"ran": loop.result.environment["precision"], "device": str(loop.device), "images": images,
            "images_per_s": images / seconds, "metric": metric, "value": metrics.get(metric), "metrics": metrics,
            "peak_memory_bytes": int(torch.cuda.max_memory_allocated()) if cuda else None}, recorder.detections


def agreement(fp32: dict, amp: dict) -> dict[str, Any]:
    """For every fp32 detection, its best IoU with an amp detection of the same class on the same
    image (0 when amp has none): quantiles and the share at 0.95 or more."""
    import numpy as np
    import torch
    from torchvision.ops import box_iou

    best: list[float] = []
    for image_id, (boxes, _scores, labels) in fp32.items():
        other_boxes, _, other_labels = amp.get(image_id, (torch.zeros((0, 4)), None, torch.zeros(0)))
        for label in labels.unique():
            ours, theirs = boxes[labels == label], other_boxes[other_labels == label]
            if len(theirs) == 0:
                best += [0.0] * len(ours)
            else:
                # a box equal to one of amp's matches it fully, even a degenerate one (random
                # weights give zero-area boxes, whose IoU is 0/0)
                same = (ours[:, None, :] == theirs[None, :, :]).all(-1)
                iou = torch.where(same, 1.0, box_iou(ours, theirs).nan_to_num(0.0))
                best += iou.max(1).values.tolist()
    counts = {"detections_fp32": sum(len(d[0]) for d in fp32.values()),
              "detections_amp": sum(len(d[0]) for d in amp.values())}
    if not best:
        return {**counts, "best_iou_p05": None, "best_iou_p50": None, "share_iou_095": None}
    p05, p50 = (float(q) for q in np.quantile(best, [0.05, 0.5]))
    return {**counts, "best_iou_p05": p05, "best_iou_p50": p50,
            "share_iou_095": float(np.mean(np.asarray(best) >= 0.95))}


def run_model(model: str, args: argparse.Namespace, data_root: Path, work: Path, real: bool) -> list[dict]:
    checkpoints = Path(args.data_root) / "checkpoints" if real else None
    if real:   # the released file must be there too, else this model runs on random weights
        probe = configure(model, "fp32", args, data_root, work / f"{model}-probe", checkpoints)
        if not (checkpoints / str(probe.model.tiers.eval.released.file)).is_file():
            checkpoints = None
    rows, detections = [], {}
    for precision in PRECISIONS:
        cfg = configure(model, precision, args, data_root, work / f"{model}-{precision}", checkpoints)
        row, detections[precision] = measure(cfg, args.warmup, random_weights=checkpoints is None)
        rows.append({"model": model, "precision": precision, "weights": "released" if checkpoints else "random",
                     "data": "val2017 subset" if real else "COCO layout", **row})
    fp32, amp = rows
    amp["delta"] = None if fp32["value"] is None or amp["value"] is None else amp["value"] - fp32["value"]
    amp["speedup"] = amp["images_per_s"] / fp32["images_per_s"]
    amp.update(agreement(detections["fp32"], detections["amp"]))
    return rows


def num(value: Any, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def table(rows: list[dict]) -> str:
    lines = [f"{'model':<12}{'weights':<9}{'asked':<6}{'ran':<6}{'images':>7}{'metric':>12}{'value':>8}"
             f"{'delta':>8}{'img/s':>9}{'x fp32':>8}{'IoU p05':>9}{'IoU p50':>9}{'>=.95':>7}  error"]
    for r in rows:
        lines.append(f"{r['model']:<12}{str(r.get('weights', '-')):<9}{str(r.get('precision', '-')):<6}"
                     f"{str(r.get('ran', '-')):<6}{str(r.get('images', '-')):>7}{str(r.get('metric') or '-'):>12}"
                     f"{num(r.get('value')):>8}{num(r.get('delta'), '{:+.2f}'):>8}"
                     f"{num(r.get('images_per_s'), '{:.1f}'):>9}"
                     f"{num(r.get('speedup')):>8}{num(r.get('best_iou_p05'), '{:.3f}'):>9}"
                     f"{num(r.get('best_iou_p50'), '{:.3f}'):>9}{num(r.get('share_iou_095')):>7}  {r.get('error', '')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help=f"default: {','.join(MODELS)} ({','.join(DRY_RUN_MODELS)} "
                                                        "with --dry-run)")
    parser.add_argument("--images", type=int, default=None, help="default 300 (4 with --dry-run)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed batches first; default 5 (1 with --dry-run)")
    parser.add_argument("--hardware", default=None, help="default h100x1 (cpu with --dry-run)")
    parser.add_argument("--input-size", type=int, default=None,
                        help=f"the torchvision detectors' input size; default the tier's ({DRY_RUN_INPUT_SIZE} "
                             "with --dry-run)")
    parser.add_argument("--data-root", default=os.environ.get("ZOO_DATA_ROOT", "/data"))
    parser.add_argument("--dry-run", action="store_true", help="a CPU: two models, 4 images, random weights")
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "precision_ab.json"))
    args = parser.parse_args(argv)
    dry = args.dry_run
    models = [m.strip() for m in (args.models or ",".join(DRY_RUN_MODELS if dry else MODELS)).split(",") if m.strip()]
    args.images = args.images if args.images is not None else (4 if dry else 300)
    args.warmup = args.warmup if args.warmup is not None else (1 if dry else 5)
    args.hardware = args.hardware or ("cpu" if dry else "h100x1")
    args.input_size = args.input_size or (DRY_RUN_INPUT_SIZE if dry else None)
    if args.images < 1 or args.warmup < 0:
        parser.error("--images must be >= 1 and --warmup >= 0")   # exit 2

    work = Path(tempfile.mkdtemp(prefix="zoo-precision-ab-"))
    real = None if dry else real_subset(Path(args.data_root), args.images, work / "data")
    if real is None:
        from benchmarks.eval_throughput import COCO_SIZES
        from tests.coco_layout import SIZES, write_coco_layout

        real_root, data_root = None, work / "data"
        # COCO's image sizes on a GPU; the layout's small ones on a CPU (a dry run takes seconds)
        write_coco_layout(data_root / "coco2017", val_images=args.images, train_images=1,
                          sizes=SIZES if dry else COCO_SIZES)
    else:
        real_root, data_root = real, real
    rows: list[dict] = []
    for model in models:
        try:
            rows += run_model(model, args, data_root, work, real_root is not None)
        except Exception as exc:  # noqa: BLE001 - a row saying why, and the next model
            rows.append({"model": model, "error": f"{type(exc).__name__}: {exc}"[:300],
                         "traceback": traceback.format_exc()[-1500:]})
            print(rows[-1]["traceback"], flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"images": args.images, "hardware": args.hardware, "rows": rows},
                                             indent=1, default=str))   # after each model
    print(table(rows), flush=True)
    failed = sorted({r["model"] for r in rows if r.get("error")})
    print(f"[precision_ab] {len(models) - len(failed)}/{len(models)} ok; failed: {failed or 'none'}; json: {args.out}")
    return 1 if failed or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
