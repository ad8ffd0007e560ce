"""``replicate darknet CFG [--classes N] [--json]``: what a Darknet cfg builds.

Prints the layer table (index, type, output channels, stride, inputs) of the parsed cfg and its
trainable parameter count as darknet allocates it (models/zoo_models/darknet/cfg_parser.py; the PyTorch
build of a detector has the same count, tests/models/test_darknet.py). Detectors and
classification backbones alike: ``replicate darknet darknet53.cfg``. Cfg format: pjreddie/darknet
(YOLOv3, arXiv:1804.02767) and AlexeyAB/darknet (YOLOv4, arXiv:2004.10934).

CFG is a path, or the name of a cfg in $ZOO_DARKNET_CFG_DIR or among the packaged ones
(models/zoo_models/darknet/cfg/: yolov3.cfg, yolov3-tiny.cfg, yolov4.cfg, yolov4-tiny.cfg, darknet53.cfg).

Errors are typed: a missing file is a DataError, an unsupported section/option a ConfigError
naming ``file:line``; the CLI maps both to exit code 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``darknet`` subcommand on the CLI's subparsers."""
    parser = subparsers.add_parser("darknet", help="show what a Darknet cfg builds: replicate darknet PATH.cfg")
    parser.add_argument("cfg", help="a Darknet .cfg file, or the name of a packaged one (e.g. yolov3.cfg)")
    parser.add_argument("--classes", type=int, default=None,
                        help="override the classes of every [yolo] (and the filters of the conv before it)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def cfg_path(name: str) -> Path:
    """``name`` as given when it is a file, else the cfg of that name on the search path; a name
    found nowhere is returned as given, so that reading it reports the missing file."""
    from zoo_models.darknet.cfg_parser import find_cfg

    path = Path(name)
    if path.is_file() or path.parent != Path("."):
        return path
    return find_cfg(name) or path


def describe(path: str, classes: int | None = None) -> dict[str, Any]:
    """The layer table and the trainable parameter count of the cfg ``path`` (a path or a name)."""
    from zoo_models.darknet.cfg_parser import layer_table, parse_cfg, trainable_parameter_count

    graph = parse_cfg(cfg_path(path), classes)
    # a classifier has no [yolo] layer: its classes are its last layer's width, not a count to show
    return {"cfg": str(path), "input": [graph.height, graph.width, graph.channels],
            "classes": graph.classes if graph.yolo_layers else None,
            "layers": layer_table(graph), "trainable_params": trainable_parameter_count(graph)}


def _print_table(info: dict[str, Any]) -> None:
    h, w, c = info["input"]
    classes = f", classes {info['classes']}" if info["classes"] is not None else ""
    print(f"{info['cfg']}: input {w}x{h}x{c}, {len(info['layers'])} layers{classes}")
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
