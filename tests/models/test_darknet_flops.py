"""Darknet's own FLOPs count, reproduced from the packaged cfgs."""

from __future__ import annotations

import pytest

from zoo_models.darknet.cfg_parser import find_cfg, parse_cfg
from zoo_models.darknet.flops import forward_flops, graph_at_size, layer_flops


def test_yolov3_at_416_counts_what_darknet_prints():
    """pjreddie/darknet loading yolov3.cfg at 416x416 prints "Total BFLOPS 65.864" (its README's
    and users' logs), and "1.595 BF" for layer 104 (3x3, 128 -> 256 channels at 52x52)."""
    graph = graph_at_size(find_cfg("yolov3.cfg"), 416, 416)
    assert forward_flops(graph) / 1e9 == pytest.approx(65.864, abs=5e-4)
    assert layer_flops(graph, graph.layers[104]) / 1e9 == pytest.approx(1.595, abs=5e-4)


def test_flops_scale_with_the_input_area_and_skip_what_darknet_does_not_count():
    at_608 = parse_cfg(find_cfg("yolov3.cfg"))   # the packaged cfg's [net] is 608x608
    at_416 = graph_at_size(find_cfg("yolov3.cfg"), 416, 416)
    assert forward_flops(at_608) / forward_flops(at_416) == pytest.approx((608 / 416) ** 2)
    assert all(layer_flops(at_416, layer) == 0 for layer in at_416.layers if layer.type != "convolutional")
