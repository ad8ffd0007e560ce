"""Darknet cfg parser, PyTorch backend, .weights reader/writer and the `replicate darknet` command.

Reads the official cfgs from ../shared/reference/darknet (next to the project), never a copy.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.darknet.cfg_parser import parse_cfg, parse_cfg_text
from models.darknet.torch_backend import Route, build_model, trainable_parameters
from models.darknet.weights import load_darknet_weights, read_header, save_darknet_weights, weights_file_size
from replicate.commands import darknet as darknet_command
from replicate.errors import ConfigError, DataError

REFERENCE = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "darknet"
pytestmark = pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"official cfgs not found at {REFERENCE}")

# (layers, [(yolo index, channels, stride)]) as darknet prints them when it loads each cfg.
EXPECTED = {
    "yolov3.cfg": (107, [(82, 255, 32), (94, 255, 16), (106, 255, 8)]),
    "yolov3-tiny.cfg": (24, [(16, 255, 32), (23, 255, 16)]),
    "yolov4.cfg": (162, [(139, 255, 8), (150, 255, 16), (161, 255, 32)]),
    "yolov4-tiny.cfg": (38, [(30, 255, 32), (37, 255, 16)]),
}
# Trainable parameters with 80 classes: design.md for the full models; the tiny counts are
# darknet's sums of conv kernels, conv biases (no BN) and BN scale/shift for these cfgs.
PARAMS = {"yolov3.cfg": 61_949_149, "yolov4.cfg": 64_363_101,
          "yolov3-tiny.cfg": 8_852_366, "yolov4-tiny.cfg": 6_056_606}


def cfg_text(name: str) -> str:
    return (REFERENCE / name).read_text()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_official_cfgs_parse_to_darknets_layer_graph(name):
    graph = parse_cfg(REFERENCE / name)
    count, yolos = EXPECTED[name]
    assert len(graph.layers) == count
    assert [(l.index, l.out_channels, l.stride) for l in graph.yolo_layers] == yolos
    assert graph.classes == 80 and graph.width == 608 if name in ("yolov3.cfg", "yolov4.cfg") else 416
    for layer in graph.layers:
        assert all(-1 <= i < layer.index for i in layer.inputs)


def test_route_shapes_follow_darknet():
    v4 = parse_cfg(REFERENCE / "yolov4.cfg")
    spp = v4.layers[113]  # route -1,-3,-5,-6 after the 5/9/13 maxpools of SPP
    assert spp.type == "route" and spp.inputs == [112, 110, 108, 107] and spp.out_channels == 2048
    assert [v4.layers[i].out_size for i in (108, 110, 112)] == [(19, 19)] * 3  # stride-1 pools keep the size
    tiny = parse_cfg(REFERENCE / "yolov4-tiny.cfg")
    assert tiny.layers[3].type == "route" and tiny.layers[3].out_channels == 32  # groups=2 group_id=1 of 64
    v3tiny = parse_cfg(REFERENCE / "yolov3-tiny.cfg")
    assert v3tiny.layers[11].type == "maxpool" and v3tiny.layers[11].out_size == (13, 13)  # size 2 stride 1


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_trainable_parameters_of_pytorch_builds(name):
    assert trainable_parameters(build_model(parse_cfg(REFERENCE / name))) == PARAMS[name]


def test_classes_override_resizes_the_convs_before_yolo():
    graph = parse_cfg(REFERENCE / "yolov4-tiny.cfg", classes=3)
    assert graph.classes == 3 and [l.out_channels for l in graph.yolo_layers] == [24, 24]
    model = build_model(graph)
    outputs = model(torch.zeros(1, 3, 96, 96))
    assert [tuple(o.shape) for o in outputs] == [(1, 24, 3, 3), (1, 24, 6, 6)]


def test_route_group_takes_the_group_id_slice():
    graph = parse_cfg(REFERENCE / "yolov4-tiny.cfg")
    x = torch.arange(4.0).view(1, 4, 1, 1)
    assert Route(graph.layers[3])(x).flatten().tolist() == [2.0, 3.0]


SYNTHETIC = """
[net]
width=64
height=64
channels=3
[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=mish
[convolutional]
filters=16
size=1
stride=1
pad=1
groups=2
activation=swish
[shortcut]
from=-2
activation=linear
[route]
layers=-1
groups=2
group_id=0
[maxpool]
size=3
stride=2
[convolutional]
filters=36
size=1
stride=1
activation=linear
[yolo]
mask=0,1,2
anchors=4,4, 8,8, 16,16, 32,32
classes=7
num=4
[route]
layers=-4, 1
[maxpool]
size=2
stride=1
[convolutional]
filters=12
size=1
activation=logistic
[yolo]
mask=3
anchors=4,4, 8,8, 16,16, 32,32
classes=7
num=4
new_coords=1
"""


def test_a_well_formed_cfg_of_the_family_builds_and_runs():
    graph = parse_cfg_text(SYNTHETIC, "synthetic.cfg")
    assert [(l.type, l.out_channels, l.stride) for l in graph.layers] == [
        ("convolutional", 16, 2), ("convolutional", 16, 2), ("shortcut", 16, 2), ("route", 8, 2),
        ("maxpool", 8, 4), ("convolutional", 36, 4), ("yolo", 36, 4), ("route", 24, 2),
        ("maxpool", 24, 2), ("convolutional", 12, 2), ("yolo", 12, 2)]
    outputs = build_model(graph)(torch.rand(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outputs] == [(2, 36, 16, 16), (2, 12, 32, 32)]
    more = parse_cfg_text(SYNTHETIC, "synthetic.cfg", classes=2)
    assert [l.out_channels for l in more.yolo_layers] == [21, 7]


def _line(text: str, marker: str, section: bool) -> int:
    """1-based line of ``marker`` in ``text``; with ``section``, of the header of its section."""
    lines = text.splitlines()
    number = next(i for i, line in enumerate(lines) if marker in line)
    while section and not lines[number].startswith("["):
        number -= 1
    return number + 1


@pytest.mark.parametrize("old, new, marker, section, words", [
    ("[maxpool]\nsize=3", "[reorg3d]\nsize=3", "[reorg3d]", False, ["[reorg3d] unsupported section", "[route]"]),
    ("activation=mish", "activation=mish\nxnor=1", "xnor=1", False, ["[convolutional]", "'xnor'"]),
    ("new_coords=1", "new_coords=1\nfoo=2", "foo=2", False, ["[yolo]", "'foo'"]),
    ("activation=swish", "activation=hardmish", "hardmish", True, ["[convolutional]", "hardmish"]),
    ("filters=36", "filters=35", "mask=0,1,2", True, ["[yolo]", "filters=(classes+5)*len(mask)"]),
    ("layers=-4, 1", "layers=-4, 9", "layers=-4, 9", True, ["[route]", "not an earlier layer"]),
    ("stride=2\npad=1", "stride=two\npad=1", "stride=two", False, ["stride='two'"]),
    ("filters=16\nsize=1", "filters=16\nsize=1\nfilters=8", "filters=8", False, ["given twice"]),
])
def test_unsupported_or_inconsistent_cfg_names_file_line_and_section(old, new, marker, section, words):
    text = SYNTHETIC.replace(old, new, 1)
    assert text != SYNTHETIC
    with pytest.raises(ConfigError) as err:
        parse_cfg_text(text, "synthetic.cfg")
    assert err.value.key == f"synthetic.cfg:{_line(text, marker, section)}"
    assert err.value.exit_code == 2
    for word in words:
        assert word in str(err.value)


def test_missing_cfg_is_a_data_error_naming_the_file(tmp_path):
    with pytest.raises(DataError, match="nothere.cfg"):
        parse_cfg(tmp_path / "nothere.cfg")


def _randomised(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in list(model.parameters()) + [b for n, b in model.named_buffers() if "running" in n]:
            tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.1)
    return model.eval()


def test_weights_round_trip_gives_identical_tensors_and_outputs(tmp_path):
    graph = parse_cfg(REFERENCE / "yolov4-tiny.cfg", classes=3)
    source, target = _randomised(build_model(graph), 0), _randomised(build_model(graph), 1)
    path = save_darknet_weights(source, tmp_path / "tiny.weights", seen=123_456_789_012)
    info = load_darknet_weights(target, path)
    assert (info.major, info.minor, info.revision, info.seen) == (0, 2, 5, 123_456_789_012)
    assert info.conv_layers_loaded == info.conv_layers_total == 21
    for (name, a), b in zip(source.state_dict().items(), target.state_dict().values()):
        if "num_batches" not in name:
            assert torch.equal(a, b), name
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(source(x), target(x)))
    assert save_darknet_weights(target, tmp_path / "again.weights").read_bytes()[20:] == path.read_bytes()[20:]


# Sizes in bytes of the released files (pjreddie.com yolov3*.weights, AlexeyAB releases yolov4*.weights):
# the layout the reader expects must account for every byte of them.
RELEASED_BYTES = {"yolov3.cfg": 248_007_048, "yolov3-tiny.cfg": 35_434_956,
                  "yolov4.cfg": 257_717_640, "yolov4-tiny.cfg": 24_251_276}


@pytest.mark.parametrize("name", sorted(RELEASED_BYTES))
def test_layout_matches_the_size_of_the_released_weights(name):
    assert weights_file_size(build_model(parse_cfg(REFERENCE / name))) == RELEASED_BYTES[name]


def test_weights_file_layout_and_old_header(tmp_path):
    graph = parse_cfg_text(SYNTHETIC, "synthetic.cfg")
    model = _randomised(build_model(graph), 2)
    path = save_darknet_weights(model, tmp_path / "old.weights", seen=77, version=(0, 1, 0))
    data = path.read_bytes()
    assert read_header(data, "old.weights") == ((0, 1, 0, 77), 16)  # 0.1: 32-bit seen
    first = model.layers[0]
    values = np.frombuffer(data, dtype="<f4", offset=16)
    # first conv has batch norm: beta, gamma, mean, variance, then the kernel
    assert np.allclose(values[:16], first.bn.bias.detach().numpy())
    assert np.allclose(values[16:32], first.bn.weight.detach().numpy())
    assert np.allclose(values[64:64 + 16 * 27], first.conv.weight.detach().numpy().ravel())
    # the second conv has no batch norm: its bias comes first
    offset = 64 + 16 * 27
    assert np.allclose(values[offset:offset + 16], model.layers[1].conv.bias.detach().numpy())
    fresh = build_model(graph)
    load_darknet_weights(fresh, path)
    assert torch.equal(fresh.layers[9].conv.weight, model.layers[9].conv.weight)


def test_truncated_and_partial_weights(tmp_path):
    graph = parse_cfg(REFERENCE / "yolov3-tiny.cfg", classes=3)
    path = save_darknet_weights(_randomised(build_model(graph), 3), tmp_path / "full.weights")
    cut = tmp_path / "cut.weights"
    cut.write_bytes(path.read_bytes()[:-400])
    with pytest.raises(DataError, match="ends inside layer 22"):
        load_darknet_weights(build_model(graph), cut)
    with pytest.raises(DataError, match="holds"):
        load_darknet_weights(build_model(parse_cfg(REFERENCE / "yolov3-tiny.cfg", classes=2)), path)
    # a backbone file (like darknet53.conv.74): the first conv layers only, loaded non-strictly
    first_two = 20 + 4 * (16 * 4 + 16 * 27) + 4 * (32 * 4 + 32 * 16 * 9)
    part = tmp_path / "part.weights"
    part.write_bytes(path.read_bytes()[:first_two])
    info = load_darknet_weights(build_model(graph), part, strict=False)
    assert info.conv_layers_loaded == 2 and info.conv_layers_total == 13


@pytest.mark.parametrize("size", [16, 18, 19])
def test_a_file_shorter_than_its_64_bit_header_is_a_data_error_naming_it(tmp_path, size):
    # version 0.2 stores `seen` as int64: 20 header bytes; numpy alone raised a bare ValueError
    path = tmp_path / "short.weights"
    path.write_bytes((np.array((0, 2, 5), "<i4").tobytes() + bytes(8))[:size])
    with pytest.raises(DataError, match=r"short\.weights.*too short for a version 0\.2 header"):
        load_darknet_weights(build_model(parse_cfg_text(SYNTHETIC, "synthetic.cfg")), path)
    with pytest.raises(DataError, match="too short"):
        read_header(path.read_bytes(), str(path))


def _command(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="replicate")
    darknet_command.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["darknet", *argv])


def test_darknet_command_prints_table_and_param_count(capsys):
    assert darknet_command.run(_command([str(REFERENCE / "yolov3-tiny.cfg")])) == 0
    out = capsys.readouterr().out
    assert "trainable parameters: 8,852,366" in out and "maxpool" in out
    assert darknet_command.run(_command([str(REFERENCE / "yolov4-tiny.cfg"), "--classes", "3", "--json"])) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["classes"] == 3 and info["trainable_params"] == 5_878_736 and len(info["layers"]) == 38
    assert info["layers"][37] == {"index": 37, "type": "yolo", "out_channels": 24, "stride": 16,
                                  "inputs": [36], "line": info["layers"][37]["line"], "out_size": [26, 26]}


def test_darknet_command_bad_path_is_a_user_error(tmp_path):
    with pytest.raises(DataError) as err:
        darknet_command.run(_command([str(tmp_path / "missing.cfg")]))
    assert err.value.exit_code == 2 and "missing.cfg" in str(err.value)
