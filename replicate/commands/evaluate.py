"""``replicate evaluate --annotations GT.json --detections DT.json [--iou-type bbox|segm] [--json]``:
COCO evaluation of a detections file (replicate/evaluation/coco.py): the 12 statistics under the
names claims use (``bbox_AP``, ``segm_AP50``...), in percent as every other view shows them
(-1 where undefined: no object of that size)."""

from __future__ import annotations

import argparse
from typing import Any

from replicate.commands import print_json


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``evaluate`` subcommand."""
    parser = subparsers.add_parser("evaluate", help="COCO-evaluate a detections file")
    parser.add_argument("--annotations", required=True, help="COCO ground-truth JSON")
    parser.add_argument("--detections", required=True, help="COCO results JSON (a list of detections)")
    parser.add_argument("--iou-type", default="bbox", choices=("bbox", "segm"))
    parser.add_argument("--json", action="store_true", help="machine-readable output: {name: percent}")
    return parser


def run(args: argparse.Namespace) -> int:
    from replicate.evaluation.coco import evaluate_files, named_percent

    named = named_percent(evaluate_files(args.annotations, args.detections, args.iou_type), args.iou_type)
    if args.json:
        print_json(named)
        return 0
    width = max(map(len, named))
    for name, value in named.items():
        print(f"{name:<{width}}  {'undefined' if value < 0 else f'{value:.2f}'}")
    return 0
