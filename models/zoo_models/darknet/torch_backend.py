"""PyTorch backend: a ``DarknetGraph`` (cfg_parser) -> ``nn.Module``.

Layer semantics follow the darknet C implementations: pjreddie/darknet (YOLOv3, arXiv:1804.02767;
public domain / YOLO licence) and AlexeyAB/darknet (YOLOv4, arXiv:2004.10934; YOLO licence):
``convolutional_layer.c``, ``route_layer.c``, ``shortcut_layer.c``, ``maxpool_layer.c``,
``upsample_layer.c``. The module's forward returns the raw maps entering each ``[yolo]`` layer;
decoding and the loss live in ``models/zoo_models/yolo/loss.py``. Parameter names are
``layers.<darknet index>.conv.weight`` / ``.bn.*`` so the darknet index is visible everywhere.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from replicate.errors import ConfigError
from zoo_models.darknet.cfg_parser import (
    DARKNET_BN_EPS,
    DARKNET_BN_MOMENTUM,
    DarknetGraph,
    Layer,
    conv_padding,
    maxpool_geometry,
)


def activation(name: str) -> nn.Module:
    """Darknet activation by name (activations.c); leaky uses slope 0.1 as darknet does."""
    table: dict[str, Callable[[], nn.Module]] = {
        "linear": nn.Identity, "leaky": lambda: nn.LeakyReLU(0.1), "mish": nn.Mish, "logistic": nn.Sigmoid,
        "relu": nn.ReLU, "swish": nn.SiLU, "tanh": nn.Tanh}
    return table[name]()


class ConvBlock(nn.Module):
    """[convolutional]: conv (bias only without batch norm), optional batch norm, activation."""

    def __init__(self, layer: Layer, in_channels: int, bn_momentum: float):
        super().__init__()
        opts = layer.options
        size, batch_norm = opts.get("size", 1), bool(opts.get("batch_normalize", 0))
        self.conv = nn.Conv2d(in_channels, opts.get("filters", 1), size, stride=opts.get("stride", 1),
                              padding=conv_padding(opts), dilation=opts.get("dilation", 1) if size > 1 else 1,
                              groups=opts.get("groups", 1), bias=not batch_norm)
        self.bn = nn.BatchNorm2d(self.conv.out_channels, momentum=bn_momentum, eps=DARKNET_BN_EPS) \
            if batch_norm else None
        # darknet's default activation for [convolutional] is logistic (parser.c)
        self.act = activation(opts.get("activation", "logistic"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)


class MaxPool(nn.Module):
    """[maxpool] with darknet's padding: ``padding`` (default size-1) split left pad//2, rest right.

    So size=2 stride=1 keeps the map size (yolov3-tiny) and SPP's 5/9/13 pools are centred.
    """

    def __init__(self, layer: Layer):
        super().__init__()
        self.size, self.stride, pad = maxpool_geometry(layer.options)
        self.pads = (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pads):
            x = F.pad(x, self.pads, value=float("-inf"))
        return F.max_pool2d(x, self.size, self.stride)


class Upsample(nn.Module):
    """[upsample]: nearest neighbour by ``stride``, times ``scale`` (AlexeyAB upsample_layer.c)."""

    def __init__(self, layer: Layer):
        super().__init__()
        self.stride, self.scale = layer.get("stride", 2), layer.get("scale", 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=self.stride, mode="nearest")
        return x * self.scale if self.scale != 1.0 else x


class Route(nn.Module):
    """[route]: concatenation of layers; with groups, the group_id-th channel slice of each."""

    def __init__(self, layer: Layer):
        super().__init__()
        self.groups, self.group_id = layer.get("groups", 1), layer.get("group_id", 0)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if self.groups > 1:
            xs = tuple(x.chunk(self.groups, dim=1)[self.group_id] for x in xs)
        return xs[0] if len(xs) == 1 else torch.cat(xs, dim=1)


class Shortcut(nn.Module):
    """[shortcut]: previous output plus the ``from`` layers, then the activation."""

    def __init__(self, layer: Layer):
        super().__init__()
        self.act = activation(layer.get("activation", "linear"))

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return self.act(out)


class DarknetModel(nn.Module):
    """The network of a cfg. ``forward(images)`` -> raw maps entering each [yolo] layer, in order.

    Attributes:
        graph: The parsed cfg (layer options, channels, strides).
        layers: One module per darknet layer (``nn.Identity`` for [yolo]).
    """

    def __init__(self, graph: DarknetGraph, bn_momentum: float = DARKNET_BN_MOMENTUM):
        super().__init__()
        self.graph = graph
        modules: list[nn.Module] = []
        for layer in graph.layers:
            in_channels = graph.channels if layer.index == 0 else graph.layers[layer.index - 1].out_channels
            modules.append(_module(layer, in_channels, bn_momentum))
        self.layers = nn.ModuleList(modules)
        self.yolo_indices = [layer.index for layer in graph.yolo_layers]
        # keep only outputs a later route/shortcut reads, so inference holds few maps
        self._keep = {i for layer in graph.layers if layer.type in ("route", "shortcut") for i in layer.inputs}

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        saved: dict[int, torch.Tensor] = {}
        heads: list[torch.Tensor] = []
        for layer, module in zip(self.graph.layers, self.layers):
            if layer.type in ("route", "shortcut"):
                x = module(*[x if i == layer.index - 1 else saved[i] for i in layer.inputs])
            elif layer.type == "yolo":
                heads.append(x)
            else:
                x = module(x)
            if layer.index in self._keep:
                saved[layer.index] = x
        return heads

    def conv_blocks(self) -> list[tuple[Layer, ConvBlock]]:
        """(layer, module) of every [convolutional], in darknet order (the .weights order)."""
        return [(layer, module) for layer, module in zip(self.graph.layers, self.layers)
                if isinstance(module, ConvBlock)]


def _module(layer: Layer, in_channels: int, bn_momentum: float) -> nn.Module:
    if layer.type == "convolutional":
        return ConvBlock(layer, in_channels, bn_momentum)
    builders: dict[str, Any] = {"maxpool": MaxPool, "upsample": Upsample, "route": Route,
                                "shortcut": Shortcut}
    if layer.type in builders:
        return builders[layer.type](layer)
    if layer.type == "yolo":
        return nn.Identity()  # the head's decoding lives outside the module
    # A classification layer ([avgpool], [connected], ...) is parsed and counted, never built:
    # a pass-through in its place would silently build a different network.
    raise ConfigError(f"darknet layer {layer.index}", f"[{layer.type}] cannot be built as a detection network")


def build_model(graph: DarknetGraph, bn_momentum: float = DARKNET_BN_MOMENTUM) -> DarknetModel:
    """The PyTorch module of ``graph``."""
    return DarknetModel(graph, bn_momentum)


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
