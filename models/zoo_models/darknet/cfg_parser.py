"""Darknet ``.cfg`` files -> an intermediate layer graph (plain dataclasses, no framework).

The format is the one of pjreddie/darknet (YOLOv3, arXiv:1804.02767; public domain / YOLO licence)
as extended by AlexeyAB/darknet (YOLOv4, arXiv:2004.10934; YOLO licence): ``[section]`` headers
followed by ``key=value`` lines, ``#``/``;`` comments. The first section is ``[net]``; every
later section is one layer, numbered from 0; ``route``/``shortcut`` refer to layers by absolute
index or by a negative offset from their own index. Option names, defaults and the output-shape
rules follow AlexeyAB's ``src/parser.c`` and the ``make_*_layer`` functions.

Besides the detectors' sections it reads those of darknet's classification cfgs (darknet53.cfg,
darknet19.cfg, ...): ``[avgpool]`` (global average pool), ``[connected]`` (fully connected:
``output``, ``activation``, optional ``batch_normalize``), ``[dropout]``, ``[softmax]`` and
``[cost]`` (no trainable parameters). ``trainable_parameter_count`` counts what darknet
allocates, so ``replicate darknet`` gives a backbone's size without building it.

Cfg names are looked up in ``$ZOO_DARKNET_CFG_DIR`` (cfgs a lab brings), then in the cfgs this
package carries (``models/zoo_models/darknet/cfg/``, written from each architecture's facts and proven equal
to the official files by tests/models/test_darknet.py); ``resolve_cfg`` names the config key of
a cfg it cannot find.

Unknown sections and options are errors (``ConfigError`` naming ``file:line``), never silently
ignored: an option this implementation does not honour would make the build differ from
darknet's without notice.
"""

from __future__ import annotations

import copy
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from replicate.errors import ConfigError, DataError

# ------------------------------------------------------------------------ option schema
# Value kinds: how darknet reads them (atoi / atof / comma lists / strings).
INT, FLOAT, STR, INTS, FLOATS = "int", "float", "str", "ints", "floats"

ACTIVATIONS = ("linear", "leaky", "mish", "logistic", "relu", "swish", "tanh")

# Darknet's batch norm, shared by both backends (torch_backend.py, tf_backend.py): rolling stats
# updated as .99 * old + .01 * new (pjreddie convolutional_layer.c forward_convolutional_layer),
# i.e. torch momentum 0.01; variance epsilon .00001 (AlexeyAB blas.c normalize_cpu).
DARKNET_BN_MOMENTUM = 0.01
DARKNET_BN_EPS = 1e-5

# [net]: only width/height/channels shape the model; the rest is the training recipe, kept so a
# recipe can be read from the cfg. Names from AlexeyAB parser.c parse_net_options.
NET_OPTIONS: dict[str, str] = {
    "batch": INT, "subdivisions": INT, "width": INT, "height": INT, "channels": INT, "inputs": INT,
    "momentum": FLOAT, "decay": FLOAT, "angle": FLOAT, "saturation": FLOAT, "exposure": FLOAT,
    "hue": FLOAT, "aspect": FLOAT, "learning_rate": FLOAT, "learning_rate_min": FLOAT,
    "burn_in": INT, "power": FLOAT, "max_batches": INT, "policy": STR, "steps": INTS,
    "scales": FLOATS, "seq_scales": FLOATS, "step": INT, "scale": FLOAT, "gamma": FLOAT,
    "sgdr_cycle": INT, "sgdr_mult": INT, "mosaic": INT, "cutmix": INT, "mixup": INT, "flip": INT,
    "blur": INT, "gaussian_noise": INT, "letter_box": INT, "mosaic_bound": INT, "max_crop": INT,
    "min_crop": INT, "label_smooth_eps": FLOAT, "resize_step": INT, "adversarial_lr": FLOAT,
    "max_chart_loss": FLOAT, "ema_alpha": FLOAT, "equidistant_point": INT,
    "num_sigmas_reject_badlabels": FLOAT, "badlabels_rejection_percentage": FLOAT,
    "weights_reject_freq": INT, "loss_scale": FLOAT, "dynamic_minibatch": INT,
    "optimized_memory": INT, "workspace_size_limit_MB": FLOAT, "time_steps": INT, "track": INT,
    "augment_speed": INT, "sequential_subdivisions": INT, "try_fix_nan": INT, "adam": INT,
    "B1": FLOAT, "B2": FLOAT, "eps": FLOAT, "use_cuda_graph": INT, "show_receptive_field": INT,
}

# Layer sections: the options this implementation honours (anything else fails).
LAYER_OPTIONS: dict[str, dict[str, str]] = {
    "convolutional": {"filters": INT, "size": INT, "stride": INT, "stride_x": INT, "stride_y": INT,
                      "pad": INT, "padding": INT, "groups": INT, "dilation": INT,
                      "batch_normalize": INT, "activation": STR},
    "shortcut": {"from": INTS, "activation": STR},
    "route": {"layers": INTS, "groups": INT, "group_id": INT},
    "upsample": {"stride": INT, "scale": FLOAT},
    "maxpool": {"size": INT, "stride": INT, "stride_x": INT, "stride_y": INT, "padding": INT},
    # Classification sections (AlexeyAB parser.c parse_avgpool/_connected/_dropout/_softmax/_cost):
    # read for their shapes and parameter counts; no backend here builds them.
    "avgpool": {},
    "connected": {"output": INT, "activation": STR, "batch_normalize": INT},
    "dropout": {"probability": FLOAT, "dropblock": INT, "dropblock_size_rel": FLOAT,
                "dropblock_size_abs": FLOAT},
    "softmax": {"groups": INT, "temperature": FLOAT, "spatial": FLOAT, "noloss": INT},
    "cost": {"type": STR, "scale": FLOAT, "ratio": FLOAT, "noobject_scale": FLOAT, "thresh": FLOAT},
    # [yolo]: parsed and kept; the loss/decoder read what they implement (models/zoo_models/yolo/loss.py).
    "yolo": {"mask": INTS, "anchors": FLOATS, "classes": INT, "num": INT, "max": INT,
             "jitter": FLOAT, "resize": FLOAT, "random": FLOAT, "ignore_thresh": FLOAT,
             "truth_thresh": FLOAT, "iou_thresh": FLOAT, "iou_thresh_kind": STR,
             "scale_x_y": FLOAT, "iou_normalizer": FLOAT, "obj_normalizer": FLOAT,
             "cls_normalizer": FLOAT, "delta_normalizer": FLOAT, "iou_loss": STR,
             "nms_kind": STR, "beta_nms": FLOAT, "max_delta": FLOAT, "new_coords": INT,
             "label_smooth_eps": FLOAT, "objectness_smooth": INT, "focal_loss": INT,
             "counters_per_class": INTS, "show_details": INT},
}
# Darknet's alternative section names (parser.c string_to_layer_type).
ALIASES = {"network": "net", "conv": "convolutional", "max": "maxpool", "avg": "avgpool",
           "conn": "connected", "soft": "softmax"}
SUPPORTED_SECTIONS = ("net", *LAYER_OPTIONS)
# Sections without trainable parameters whose output is their input (darknet copies w, h, c).
PASS_THROUGH = ("dropout", "softmax", "cost")
COST_TYPES = ("sse", "masked", "smooth", "L1", "seg", "wgan", "logistic")  # cost_layer.c get_cost_type

# Where cfg names are looked up: the lab's directory first, so it can bring a cfg of its own.
CFG_DIR_ENV = "ZOO_DARKNET_CFG_DIR"
PACKAGED_CFG_DIR = Path(__file__).resolve().parent / "cfg"

# Defaults of the options the graph and the loss read (AlexeyAB parser.c).
YOLO_DEFAULTS: dict[str, Any] = {
    "classes": 20, "num": 1, "jitter": 0.2, "resize": 1.0, "random": 0.0, "ignore_thresh": 0.5,
    "truth_thresh": 1.0, "iou_thresh": 1.0, "scale_x_y": 1.0, "iou_normalizer": 0.75,
    "obj_normalizer": 1.0, "cls_normalizer": 1.0, "delta_normalizer": 1.0, "iou_loss": "mse",
    "nms_kind": "default", "beta_nms": 0.6, "max_delta": math.inf, "new_coords": 0,
    "label_smooth_eps": 0.0, "max": 200,
}
IOU_LOSSES = ("mse", "iou", "giou", "diou", "ciou")


# ----------------------------------------------------------------------------- data
@dataclass
class Section:
    """One ``[name]`` block of a cfg file with its raw ``key=value`` options."""

    name: str
    line: int
    options: dict[str, str] = field(default_factory=dict)
    option_lines: dict[str, int] = field(default_factory=dict)


@dataclass
class Layer:
    """One layer of the graph.

    Attributes:
        index: Darknet layer index (0 = the first section after ``[net]``).
        type: Canonical section name (``convolutional``, ``route``, ...).
        options: Typed options as written in the file (defaults are not filled in).
        out_channels: Channels of the layer's output.
        stride: Downsampling factor of the output relative to the network input.
        inputs: Absolute indices of the layers it reads; -1 is the network input.
        out_size: (height, width) of the output at the cfg's ``[net]`` size.
        line: Line of the section header in ``source``.
    """

    index: int
    type: str
    options: dict[str, Any]
    out_channels: int
    stride: float
    inputs: list[int]
    out_size: tuple[int, int]
    line: int
    source: str = ""

    def get(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)

    def where(self) -> str:
        return f"{self.source}:{self.line}"


@dataclass
class DarknetGraph:
    """A parsed network: the ``[net]`` options and the layers in darknet order."""

    source: str
    net: dict[str, Any]
    layers: list[Layer]

    @property
    def width(self) -> int:
        return int(self.net.get("width", 0))

    @property
    def height(self) -> int:
        return int(self.net.get("height", 0))

    @property
    def channels(self) -> int:
        return int(self.net.get("channels", 3))

    def of_type(self, kind: str) -> list[Layer]:
        return [layer for layer in self.layers if layer.type == kind]

    @property
    def yolo_layers(self) -> list[Layer]:
        return self.of_type("yolo")

    @property
    def classes(self) -> int:
        counts = {int(layer.get("classes", YOLO_DEFAULTS["classes"])) for layer in self.yolo_layers}
        return counts.pop() if len(counts) == 1 else -1


# -------------------------------------------------------------------------- reading
def _strip_comment(text: str) -> str:
    # darknet stops reading list values at '#' (parse_yolo_mask); treat it as a comment everywhere
    return text.split("#", 1)[0].strip()


def read_sections(text: str, source: str) -> list[Section]:
    """Split cfg text into sections; malformed lines and unknown section names fail."""
    sections: list[Section] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        where = f"{source}:{number}"
        if line.startswith("["):
            if not line.endswith("]"):
                raise ConfigError(where, f"malformed section header {line!r}")
            name = ALIASES.get(line[1:-1].strip(), line[1:-1].strip())
            if name not in SUPPORTED_SECTIONS:
                raise ConfigError(where, f"[{line[1:-1]}] unsupported section; supported: "
                                         f"{', '.join(f'[{s}]' for s in SUPPORTED_SECTIONS)}")
            sections.append(Section(name, number))
            continue
        if not sections:
            raise ConfigError(where, f"option {line!r} before the first section")
        key, sep, value = line.partition("=")
        key, value = key.strip(), _strip_comment(value)
        if not sep or not key:
            raise ConfigError(where, f"[{sections[-1].name}] expected key=value, got {line!r}")
        if key in sections[-1].options:
            raise ConfigError(where, f"[{sections[-1].name}] option {key!r} given twice "
                                     f"(first at line {sections[-1].option_lines[key]})")
        sections[-1].options[key] = value
        sections[-1].option_lines[key] = number
    if not sections or sections[0].name != "net":
        raise ConfigError(f"{source}:1", "the first section must be [net]")
    return sections


def _convert(kind: str, value: str, where: str, key: str) -> Any:
    try:
        if kind == INT:
            return int(value)
        if kind == FLOAT:
            return float(value)
        if kind == INTS:
            return [int(v) for v in value.split(",") if v.strip()]
        if kind == FLOATS:
            return [float(v) for v in value.split(",") if v.strip()]
        return value
    except ValueError:
        raise ConfigError(where, f"{key}={value!r} is not {'a list of ' if 's' == kind[-1] else ''}"
                                 f"{kind.rstrip('s')}") from None


def typed_options(section: Section, source: str) -> dict[str, Any]:
    """The section's options converted to their types; an unsupported option fails."""
    schema = NET_OPTIONS if section.name == "net" else LAYER_OPTIONS[section.name]
    typed: dict[str, Any] = {}
    for key, value in section.options.items():
        where = f"{source}:{section.option_lines[key]}"
        if key not in schema:
            raise ConfigError(where, f"[{section.name}] unsupported option {key!r}; supported: "
                                     f"{', '.join(sorted(schema))}")
        typed[key] = _in_range(section.name, key, _convert(schema[key], value, where, key), where)
    return typed


# Darknet reads every integer with atoi into a C int; a value past it is no layer darknet builds.
C_INT_MAX = 2**31 - 1
# The least value of an option below which no layer has a shape (a stride of 0 divides by zero,
# a negative size or filter count has no meaning); options not listed are bounded by C int alone.
MINIMUM = {"filters": 1, "size": 1, "stride": 1, "stride_x": 1, "stride_y": 1, "groups": 1, "dilation": 1,
           "pad": 0, "padding": 0, "batch_normalize": 0, "output": 1, "width": 1, "height": 1, "channels": 1,
           "batch": 1, "subdivisions": 1, "classes": 1, "num": 1}


def _in_range(section: str, key: str, value: Any, where: str) -> Any:
    """``value`` of ``[section] key``, refused (naming section, key and line) outside darknet's
    C int or below the option's :data:`MINIMUM`."""
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, float) and not math.isfinite(item):
            raise ConfigError(where, f"[{section}] {key}={item} is not a finite number")
        if isinstance(item, int) and abs(item) > C_INT_MAX:
            raise ConfigError(where, f"[{section}] {key}={item} is outside darknet's int range "
                                     f"(|value| <= {C_INT_MAX})")
        if isinstance(item, int) and key in MINIMUM and item < MINIMUM[key]:
            raise ConfigError(where, f"[{section}] {key}={item} is below {MINIMUM[key]}")
    return value


# ------------------------------------------------------------------- classes override
def override_classes(sections: list[Section], classes: int, source: str) -> list[Section]:
    """Sections with ``classes`` in every [yolo] and the conv before it resized to match.

    The conv before a [yolo] predicts ``len(mask) * (classes + 5)`` channels (AlexeyAB's README,
    "How to train": filters=(classes + 5)x3).
    """
    if classes < 1:
        raise ConfigError("classes", f"{classes} must be >= 1")
    if not any(section.name == "yolo" for section in sections):
        # a classifier's class count is its last layer's width: overriding it here would be ignored
        raise ConfigError("classes", f"{source} has no [yolo] layer whose classes could be overridden")
    sections = copy.deepcopy(sections)
    for pos, section in enumerate(sections):
        if section.name != "yolo":
            continue
        before = sections[pos - 1]
        if before.name != "convolutional":
            raise ConfigError(f"{source}:{section.line}", "[yolo] must follow a [convolutional] "
                                                          "to override the number of classes")
        opts = typed_options(section, source)
        anchors = len(opts["mask"]) if "mask" in opts else int(opts.get("num", YOLO_DEFAULTS["num"]))
        section.options["classes"] = str(classes)
        before.options["filters"] = str(anchors * (classes + 5))
        before.option_lines.setdefault("filters", before.line)
        section.option_lines.setdefault("classes", section.line)
    return sections


def scale_width(sections: list[Section], multiple: float, divisor: int = 8) -> list[Section]:
    """Sections with every [convolutional]'s filters x ``multiple`` (rounded to ``divisor``).

    The convs in front of [yolo] layers keep their filters (they encode anchors x classes). A
    width multiplier (as in MobileNets, arXiv:1704.04861) gives a cheaper network of the same
    topology: how the smoke tier trains a tiny cfg on a CPU in minutes.
    """
    sections = copy.deepcopy(sections)
    heads = {pos - 1 for pos, s in enumerate(sections) if s.name == "yolo"}
    for pos, section in enumerate(sections):
        if section.name == "convolutional" and pos not in heads:
            filters = int(section.options.get("filters", "1"))
            scaled = max(divisor, int(round(filters * multiple / divisor)) * divisor)
            section.options["filters"] = str(scaled)
            section.option_lines.setdefault("filters", section.line)
    return sections


# --------------------------------------------------------------------------- graph
@dataclass
class _Shape:
    channels: int
    height: int
    width: int
    stride: float


def _resolve(refs: list[int], index: int, where: str, kind: str) -> list[int]:
    out = []
    for ref in refs:
        absolute = index + ref if ref < 0 else ref
        if not 0 <= absolute < index:
            raise ConfigError(where, f"[{kind}] refers to layer {ref} -> {absolute}, which is not an "
                                     f"earlier layer (this is layer {index})")
        out.append(absolute)
    return out


def _conv_shape(opts: dict, prev: _Shape, where: str) -> _Shape:
    size, filters, groups = opts.get("size", 1), opts.get("filters", 1), opts.get("groups", 1)
    stride = opts.get("stride", 1)
    sx, sy = opts.get("stride_x", stride), opts.get("stride_y", stride)
    if sx != sy:
        raise ConfigError(where, f"[convolutional] stride_x={sx} != stride_y={sy} is not supported")
    if opts.get("activation", "logistic") not in ACTIVATIONS:
        raise ConfigError(where, f"[convolutional] activation={opts['activation']!r} is not supported; "
                                 f"supported: {', '.join(ACTIVATIONS)}")
    if groups < 1 or prev.channels % groups or filters % groups:
        raise ConfigError(where, f"[convolutional] groups={groups} must divide the input channels "
                                 f"({prev.channels}) and filters ({filters})")
    dilation = opts.get("dilation", 1) if size > 1 else 1
    pad = conv_padding(opts)
    span = dilation * (size - 1) + 1
    height = (prev.height + 2 * pad - span) // sx + 1
    width = (prev.width + 2 * pad - span) // sx + 1
    return _Shape(filters, height, width, prev.stride * sx)


def conv_padding(opts: dict) -> int:
    """pad=1 means size/2 (darknet), else the explicit padding (default 0)."""
    return opts.get("size", 1) // 2 if opts.get("pad", 0) else opts.get("padding", 0)


def maxpool_geometry(opts: dict) -> tuple[int, int, int]:
    """(size, stride, total padding) of a [maxpool] as darknet computes them."""
    stride = opts.get("stride", 1)
    sx, sy = opts.get("stride_x", stride), opts.get("stride_y", stride)
    if sx != sy:
        raise ValueError(f"stride_x={sx} != stride_y={sy}")
    size = opts.get("size", stride)
    return size, sx, opts.get("padding", size - 1)


def _layer_shape(kind: str, opts: dict, index: int, shapes: list[_Shape], prev: _Shape,
                 where: str) -> tuple[_Shape, list[int]]:
    """Output shape and absolute inputs of one layer (darknet's make_*_layer rules)."""
    if kind == "convolutional":
        return _conv_shape(opts, prev, where), [index - 1]
    if kind == "maxpool":
        try:
            size, stride, pad = maxpool_geometry(opts)
        except ValueError as exc:
            raise ConfigError(where, f"[maxpool] {exc} is not supported") from None
        height, width = (prev.height + pad - size) // stride + 1, (prev.width + pad - size) // stride + 1
        return _Shape(prev.channels, height, width, prev.stride * stride), [index - 1]
    if kind == "upsample":
        stride = opts.get("stride", 2)
        if stride < 1:
            raise ConfigError(where, f"[upsample] stride={stride}: downsampling is not supported")
        return _Shape(prev.channels, prev.height * stride, prev.width * stride, prev.stride / stride), [index - 1]
    if kind == "route":
        return _route_shape(opts, index, shapes, where)
    if kind == "shortcut":
        return _shortcut_shape(opts, index, shapes, prev, where)
    if kind in ("avgpool", "connected"):
        return _flat_shape(kind, opts, prev, where), [index - 1]
    if kind in PASS_THROUGH:
        _check_pass_through(kind, opts, prev, where)
    return prev, [index - 1]  # yolo and PASS_THROUGH: pass their input through


def _flat_shape(kind: str, opts: dict, prev: _Shape, where: str) -> _Shape:
    """[avgpool] averages each channel over the whole map (avgpool_layer.c: out 1x1xc);
    [connected] maps the flattened input (h*w*c) to ``output`` values (out 1x1xoutput)."""
    stride = prev.stride * prev.height  # one cell covers the whole input
    if kind == "avgpool":
        return _Shape(prev.channels, 1, 1, stride)
    output = opts.get("output", 1)
    if output < 1:
        raise ConfigError(where, f"[connected] output={output} must be >= 1")
    if opts.get("activation", "logistic") not in ACTIVATIONS:
        raise ConfigError(where, f"[connected] activation={opts['activation']!r} is not supported; "
                                 f"supported: {', '.join(ACTIVATIONS)}")
    return _Shape(output, 1, 1, stride)


def _check_pass_through(kind: str, opts: dict, prev: _Shape, where: str) -> None:
    """The values darknet would refuse (make_softmax_layer asserts inputs % groups == 0)."""
    if kind == "dropout" and not 0 <= opts.get("probability", 0.5) < 1:
        raise ConfigError(where, f"[dropout] probability={opts['probability']} is outside [0, 1)")
    if kind == "softmax":
        groups, inputs = opts.get("groups", 1), prev.channels * prev.height * prev.width
        if groups < 1 or inputs % groups:
            raise ConfigError(where, f"[softmax] groups={groups} must divide the {inputs} inputs")
    if kind == "cost" and opts.get("type", "sse") not in COST_TYPES:
        raise ConfigError(where, f"[cost] type={opts['type']!r}; supported: {', '.join(COST_TYPES)}")


def _route_shape(opts: dict, index: int, shapes: list[_Shape], where: str) -> tuple[_Shape, list[int]]:
    if "layers" not in opts:
        raise ConfigError(where, "[route] needs layers=")
    inputs = _resolve(opts["layers"], index, where, "route")
    groups, group_id = opts.get("groups", 1), opts.get("group_id", 0)
    if groups < 1 or not 0 <= group_id < groups:
        raise ConfigError(where, f"[route] groups={groups}, group_id={group_id} is not a valid split")
    first = shapes[inputs[0]]
    for i in inputs:
        if (shapes[i].height, shapes[i].width) != (first.height, first.width):
            raise ConfigError(where, f"[route] layer {i} is {shapes[i].height}x{shapes[i].width}, "
                                     f"layer {inputs[0]} is {first.height}x{first.width}")
        if shapes[i].channels % groups:
            raise ConfigError(where, f"[route] groups={groups} does not divide layer {i}'s "
                                     f"{shapes[i].channels} channels")
    channels = sum(shapes[i].channels for i in inputs) // groups
    return _Shape(channels, first.height, first.width, first.stride), inputs


def _shortcut_shape(opts: dict, index: int, shapes: list[_Shape], prev: _Shape,
                    where: str) -> tuple[_Shape, list[int]]:
    if "from" not in opts:
        raise ConfigError(where, "[shortcut] needs from=")
    if opts.get("activation", "linear") not in ACTIVATIONS:
        raise ConfigError(where, f"[shortcut] activation={opts['activation']!r} is not supported")
    sources = _resolve(opts["from"], index, where, "shortcut")
    for i in sources:
        s = shapes[i]
        if (s.channels, s.height, s.width) != (prev.channels, prev.height, prev.width):
            # darknet would add over the overlapping part; no official detector relies on it
            raise ConfigError(where, f"[shortcut] layer {i} ({s.channels}x{s.height}x{s.width}) does "
                                     f"not match the previous layer ({prev.channels}x{prev.height}x"
                                     f"{prev.width}); only equal shapes are supported")
    return prev, [index - 1, *sources]


def _check_yolo(opts: dict, prev: _Shape, where: str) -> None:
    classes = opts.get("classes", YOLO_DEFAULTS["classes"])
    num = opts.get("num", YOLO_DEFAULTS["num"])
    mask = opts.get("mask", list(range(num)))
    anchors = opts.get("anchors", [])
    if len(anchors) < 2 * num:
        raise ConfigError(where, f"[yolo] num={num} needs {2 * num} anchor values, got {len(anchors)}")
    if any(not 0 <= m < num for m in mask):
        raise ConfigError(where, f"[yolo] mask={mask} refers to anchors outside 0..{num - 1}")
    if prev.channels != len(mask) * (classes + 5):
        raise ConfigError(where, f"[yolo] the previous layer has {prev.channels} channels but classes="
                                 f"{classes} and {len(mask)} masked anchors need "
                                 f"{len(mask) * (classes + 5)} (filters=(classes+5)*len(mask))")
    if opts.get("iou_loss", "mse") not in IOU_LOSSES:
        raise ConfigError(where, f"[yolo] iou_loss={opts['iou_loss']!r}; supported: {', '.join(IOU_LOSSES)}")


def build_graph(sections: list[Section], source: str) -> DarknetGraph:
    """Typed layers with output channels, strides and absolute inputs."""
    net = typed_options(sections[0], source)
    height, width = int(net.get("height", 0)), int(net.get("width", 0))
    if height < 1 or width < 1:
        raise ConfigError(f"{source}:{sections[0].line}", "[net] needs width= and height=")
    prev = _Shape(int(net.get("channels", 3)), height, width, 1)
    shapes: list[_Shape] = []
    layers: list[Layer] = []
    for index, section in enumerate(sections[1:]):
        where = f"{source}:{section.line}"
        opts = typed_options(section, source)
        shape, inputs = _layer_shape(section.name, opts, index, shapes, prev, where)
        if section.name == "yolo":
            _check_yolo(opts, prev, where)
        if shape.height < 1 or shape.width < 1:
            raise ConfigError(where, f"[{section.name}] output would be empty at {width}x{height}")
        stride = int(shape.stride) if float(shape.stride).is_integer() else shape.stride
        layers.append(Layer(index, section.name, opts, shape.channels, stride, inputs,
                            (shape.height, shape.width), section.line, source))
        shapes.append(shape)
        prev = shape
    if not layers:
        raise ConfigError(f"{source}:{sections[0].line}", "no layers after [net]")
    return DarknetGraph(source, net, layers)


def parse_cfg_text(text: str, source: str = "<cfg>", classes: Optional[int] = None,
                   width_multiple: float = 1.0) -> DarknetGraph:
    """Parse cfg text; ``classes`` overrides the number of classes of every [yolo];
    ``width_multiple`` scales the filters of the convs (not those feeding a [yolo])."""
    sections = read_sections(text, source)
    if classes is not None:
        sections = override_classes(sections, classes, source)
    if width_multiple != 1.0:
        if width_multiple <= 0:
            raise ConfigError("width_multiple", f"{width_multiple} must be > 0")
        sections = scale_width(sections, width_multiple)
    return build_graph(sections, source)


MAX_CFG_BYTES = 1 << 20


def parse_cfg(path: str | Path, classes: Optional[int] = None, width_multiple: float = 1.0) -> DarknetGraph:
    """Parse a cfg file (see parse_cfg_text for ``classes`` and ``width_multiple``).

    Raises:
        DataError: The file is missing or unreadable.
        ConfigError: A section, option or value is unsupported or inconsistent ("file:line").
    """
    path = Path(path)
    try:
        # A FIFO would block the read forever and /dev/zero never end: only regular files of a
        # cfg's size (the largest official cfg, yolov4.cfg, is 12 KB) are read.
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise DataError(str(path), "not a regular file (a darknet cfg is a text file)")
        if info.st_size > MAX_CFG_BYTES:
            raise DataError(str(path), f"{info.st_size} bytes: larger than any darknet cfg "
                                       f"(limit {MAX_CFG_BYTES // 1024} KiB)")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(str(path), "darknet cfg file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(str(path), f"darknet cfg file unreadable: {exc}") from None
    return parse_cfg_text(text, path.name, classes, width_multiple)


def layer_table(graph: DarknetGraph) -> list[dict[str, Any]]:
    """One row per layer: index, type, output channels, stride, inputs (for printing)."""
    rows = []
    for layer in graph.layers:
        rows.append({"index": layer.index, "type": layer.type, "out_channels": layer.out_channels,
                     "stride": layer.stride, "inputs": layer.inputs, "line": layer.line,
                     "out_size": list(layer.out_size)})
    return rows


# ----------------------------------------------------------------- parameter count
def input_shape(graph: DarknetGraph, index: int) -> tuple[int, int, int]:
    """(channels, height, width) entering layer ``index`` (its predecessor's output)."""
    if index == 0:
        return graph.channels, graph.height, graph.width
    prev = graph.layers[index - 1]
    return prev.out_channels, prev.out_size[0], prev.out_size[1]


def layer_parameters(graph: DarknetGraph, layer: Layer) -> int:
    """Trainable parameters darknet allocates for ``layer``.

    [convolutional]: filters x (channels / groups) x size^2 weights and ``filters`` biases, plus
    ``filters`` scales with batch norm (there the biases are the norm's shift and the conv has
    none: the torch build's conv bias or BN weight/bias, torch_backend.py). [connected]:
    inputs x output weights, ``output`` biases, plus ``output`` scales with batch norm
    (connected_layer.c make_connected_layer). Rolling means/variances are not trained.
    """
    channels, height, width = input_shape(graph, layer.index)
    bn = bool(layer.get("batch_normalize", 0))
    if layer.type == "convolutional":
        size, groups = layer.get("size", 1), layer.get("groups", 1)
        return layer.out_channels * (channels // groups) * size * size + layer.out_channels * (1 + bn)
    if layer.type == "connected":
        return channels * height * width * layer.out_channels + layer.out_channels * (1 + bn)
    return 0


def trainable_parameter_count(graph: DarknetGraph) -> int:
    """The network's trainable parameters, counted from the cfg (no framework needed)."""
    return sum(layer_parameters(graph, layer) for layer in graph.layers)


# ------------------------------------------------------------------------ cfg lookup
def cfg_search_path() -> list[Path]:
    """Where cfg names are looked up: $ZOO_DARKNET_CFG_DIR, then the packaged models/zoo_models/darknet/cfg/."""
    lab = os.environ.get(CFG_DIR_ENV)
    return ([Path(lab)] if lab else []) + [PACKAGED_CFG_DIR]


def find_cfg(name: str) -> Optional[Path]:
    """The cfg file ``name`` (an absolute path, or a name in cfg_search_path()), or None."""
    path = Path(name)
    candidates = [path] if path.is_absolute() else [d / name for d in cfg_search_path()]
    return next((c.resolve() for c in candidates if c.is_file()), None)


def resolve_cfg(name: str, key: str) -> Path:
    """find_cfg, or a ConfigError naming the config ``key`` that asked for ``name``."""
    found = find_cfg(name)
    if found is None:
        where = str(Path(name).parent) if Path(name).is_absolute() else \
            ", ".join(str(d) for d in cfg_search_path())
        raise ConfigError(key, f"darknet cfg {name!r} not found; looked in: {where} "
                               f"(packaged: {', '.join(packaged_cfgs())}; ${CFG_DIR_ENV} adds a directory)")
    return found


def packaged_cfgs() -> list[str]:
    """Names of the cfgs this package carries."""
    return sorted(p.name for p in PACKAGED_CFG_DIR.glob("*.cfg"))
