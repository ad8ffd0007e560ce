"""``replicate evaluate --annotations GT.json --detections DT.json [--iou-type bbox|segm]``: COCO
evaluation of a detections file (replicate/evaluation/coco.py), printed as JSON."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``evaluate`` subcommand."""
    parser = subparsers.add_parser("evaluate", help="COCO-evaluate a detections file")
    parser.add_argument("--annotations", required=True, help="COCO ground-truth JSON")
    parser.add_argument("--detections", required=True, help="COCO results JSON (a list of detections)")
    parser.add_argument("--iou-type", default="bbox", choices=("bbox", "segm"))
    return parser


def run(args: argparse.Namespace) -> int:
    from replicate.evaluation.coco import evaluate_files

    print(json.dumps(evaluate_files(args.annotations, args.detections, args.iou_type)))
    return 0
