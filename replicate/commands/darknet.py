"""``replicate darknet PATH.cfg [--classes N] [--json]``: what a Darknet cfg builds.

Prints the layer table (index, type, output channels, stride, inputs) of the parsed cfg and the
trainable parameter count of its PyTorch build (models/darknet). Cfg format: pjreddie/darknet
(YOLOv3, arXiv:1804.02767) and AlexeyAB/darknet (YOLOv4, arXiv:2004.10934).

Errors are typed: a missing file is a DataError, an unsupported section/option a ConfigError
naming ``file:line``; the CLI maps both to exit code 2.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``darknet`` subcommand on the CLI's subparsers."""
    parser = subparsers.add_parser("darknet", help="show what a Darknet cfg builds: replicate darknet PATH.cfg")
    parser.add_argument("cfg", help="a Darknet .cfg file (e.g. yolov3.cfg)")
    parser.add_argument("--classes", type=int, default=None,
                        help="override the classes of every [yolo] (and the filters of the conv before it)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def describe(path: str, classes: int | None = None) -> dict[str, Any]:
    """The layer table and the trainable parameter count of ``path``'s PyTorch build."""
    from models.darknet.cfg_parser import layer_table, parse_cfg
    from models.darknet.torch_backend import build_model, trainable_parameters

    graph = parse_cfg(path, classes)
    model = build_model(graph)
    return {"cfg": str(path), "input": [graph.height, graph.width, graph.channels], "classes": graph.classes,
            "layers": layer_table(graph), "trainable_params": trainable_parameters(model)}


def _print_table(info: dict[str, Any]) -> None:
    h, w, c = info["input"]
    print(f"{info['cfg']}: input {w}x{h}x{c}, {len(info['layers'])} layers, classes {info['classes']}")
    print(f"{'idx':>4}  {'type':<14}{'out_ch':>7}{'stride':>8}  {'out':>9}  inputs")
    for row in info["layers"]:
        size = "x".join(str(v) for v in row["out_size"])
        inputs = ",".join(str(i) for i in row["inputs"])
        print(f"{row['index']:>4}  {row['type']:<14}{row['out_channels']:>7}{row['stride']:>8}  {size:>9}  {inputs}")
    print(f"trainable parameters: {info['trainable_params']:,}")


def run(args: argparse.Namespace) -> int:
    """Print the table (or JSON); typed errors propagate to the CLI (exit 2)."""
    info = describe(args.cfg, args.classes)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_table(info)
    return 0
