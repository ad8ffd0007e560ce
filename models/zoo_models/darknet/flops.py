"""FLOPs of a Darknet graph as darknet counts them ("Total BFLOPS" when it loads a cfg).

darknet counts the multiply-adds of its convolutions as two operations each:
2 x filters x (channels / groups) x size^2 x out_h x out_w per [convolutional]
(pjreddie/darknet src/convolutional_layer.c, make_convolutional_layer), and nothing for routes,
shortcuts, pooling, upsampling or the [yolo] decoding. yolov3.cfg at 416x416 prints
"Total BFLOPS 65.864" in pjreddie/darknet (tests/models/test_darknet_flops.py checks this count
against it). The benchmarks use it for the model FLOPs utilisation of a training step.
"""

from __future__ import annotations

from pathlib import Path

from zoo_models.darknet.cfg_parser import DarknetGraph, Layer, build_graph, input_shape, read_sections


def layer_flops(graph: DarknetGraph, layer: Layer) -> int:
    """Forward FLOPs of one layer at the graph's input size (0 for what darknet does not count)."""
    if layer.type != "convolutional":
        return 0
    channels, _, _ = input_shape(graph, layer.index)
    size, groups = layer.get("size", 1), layer.get("groups", 1)
    return 2 * layer.out_channels * (channels // groups) * size * size * layer.out_size[0] * layer.out_size[1]


def forward_flops(graph: DarknetGraph) -> int:
    """One image's forward pass, in FLOPs (darknet's "Total BFLOPS" x 1e9)."""
    return sum(layer_flops(graph, layer) for layer in graph.layers)


def graph_at_size(path: str | Path, width: int, height: int) -> DarknetGraph:
    """The cfg's graph with its ``[net]`` input set to width x height (the size a job runs at)."""
    path = Path(path)
    sections = read_sections(path.read_text(encoding="utf-8"), path.name)
    sections[0].options["width"], sections[0].options["height"] = str(width), str(height)
    return build_graph(sections, path.name)
