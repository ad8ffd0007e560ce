"""Darknet cfg parser, PyTorch backend, .weights reader/writer and the `replicate darknet` command.

Reads the cfgs the package carries (models/zoo_models/darknet/cfg/). Where the reference data holds the
official cfgs (tests/conftest.py, ``reference``), proves each packaged cfg equal to its official
file, layer for layer and in parameter count; without it, that cross-check alone skips.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from replicate.errors import ConfigError, DataError
from zoo_models.commands import darknet as darknet_command
from zoo_models.darknet.cfg_parser import (
    CFG_DIR_ENV,
    PACKAGED_CFG_DIR,
    layer_parameters,
    packaged_cfgs,
    parse_cfg,
    parse_cfg_text,
    read_sections,
    resolve_cfg,
    trainable_parameter_count,
    typed_options,
)
from zoo_models.darknet.torch_backend import Route, build_model, trainable_parameters
from zoo_models.darknet.weights import load_darknet_weights, read_header, save_darknet_weights, weights_file_size

CFG = PACKAGED_CFG_DIR

# (layers, [(yolo index, channels, stride)]) as darknet prints them when it loads each cfg.
EXPECTED = {
    "yolov3.cfg": (107, [(82, 255, 32), (94, 255, 16), (106, 255, 8)]),
    "yolov3-tiny.cfg": (24, [(16, 255, 32), (23, 255, 16)]),
    "yolov4.cfg": (162, [(139, 255, 8), (150, 255, 16), (161, 255, 32)]),
    "yolov4-tiny.cfg": (38, [(30, 255, 32), (37, 255, 16)]),
}
# Trainable parameters with 80 classes: models/zoo_models/conf/model/yolov3.yaml and yolov4.yaml (full variants'
# trainable_params); the tiny counts are darknet's sums of conv kernels, conv biases (no BN) and
# BN scale/shift for these cfgs.
PARAMS = {"yolov3.cfg": 61_949_149, "yolov4.cfg": 64_363_101,
          "yolov3-tiny.cfg": 8_852_366, "yolov4-tiny.cfg": 6_056_606}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_official_cfgs_parse_to_darknets_layer_graph(name):
    graph = parse_cfg(CFG / name)
    count, yolos = EXPECTED[name]
    assert len(graph.layers) == count
    assert [(ly.index, ly.out_channels, ly.stride) for ly in graph.yolo_layers] == yolos
    assert graph.classes == 80 and graph.width == 608 if name in ("yolov3.cfg", "yolov4.cfg") else 416
    for layer in graph.layers:
        assert all(-1 <= i < layer.index for i in layer.inputs)


def test_route_shapes_follow_darknet():
    v4 = parse_cfg(CFG / "yolov4.cfg")
    spp = v4.layers[113]  # route -1,-3,-5,-6 after the 5/9/13 maxpools of SPP
    assert spp.type == "route" and spp.inputs == [112, 110, 108, 107] and spp.out_channels == 2048
    assert [v4.layers[i].out_size for i in (108, 110, 112)] == [(19, 19)] * 3  # stride-1 pools keep the size
    tiny = parse_cfg(CFG / "yolov4-tiny.cfg")
    assert tiny.layers[3].type == "route" and tiny.layers[3].out_channels == 32  # groups=2 group_id=1 of 64
    v3tiny = parse_cfg(CFG / "yolov3-tiny.cfg")
    assert v3tiny.layers[11].type == "maxpool" and v3tiny.layers[11].out_size == (13, 13)  # size 2 stride 1


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_trainable_parameters_of_pytorch_builds_and_of_the_cfg_count(name):
    graph = parse_cfg(CFG / name)
    assert trainable_parameters(build_model(graph)) == trainable_parameter_count(graph) == PARAMS[name]


def test_packaged_cfgs_are_the_ones_the_models_name():
    assert packaged_cfgs() == sorted([*EXPECTED, "darknet53.cfg"])
    for model in ("yolov3", "yolov4"):
        zoo_conf = Path(__file__).resolve().parents[2] / "models" / "zoo_models" / "conf"
        text = (zoo_conf / "model" / f"{model}.yaml").read_text()
        assert f"cfg: {model}.cfg" in text and f"cfg: {model}-tiny.cfg" in text


# ---------------------------------------------------------------- packaged = official
def _sections(path: Path) -> list[tuple[str, dict]]:
    """(section, typed options) of every section, [net] included: what the build, the loss, the
    decoder and the augmentation read; comments and the file's layout are not compared."""
    return [(s.name, typed_options(s, path.name)) for s in read_sections(path.read_text(), path.name)]


@pytest.mark.parametrize("name", sorted([*EXPECTED, "darknet53.cfg"]))
def test_packaged_cfg_equals_the_official_one_layer_for_layer(name, reference):
    official = reference("darknet") / name
    if not official.is_file():
        pytest.skip(f"no official {name} in {official.parent}")
    ours, theirs = _sections(CFG / name), _sections(official)
    assert len(ours) == len(theirs), f"{len(ours) - 1} layers, official {len(theirs) - 1}"
    for index, (mine, other) in enumerate(zip(ours, theirs), start=-1):  # [net] is -1
        assert mine == other, f"layer {index}: packaged {mine} != official {other}"
    packaged, original = parse_cfg(CFG / name), parse_cfg(official)
    assert [(ly.type, ly.out_channels, ly.stride, ly.inputs, ly.out_size) for ly in packaged.layers] == \
           [(ly.type, ly.out_channels, ly.stride, ly.inputs, ly.out_size) for ly in original.layers]
    assert trainable_parameter_count(packaged) == trainable_parameter_count(original)


# ---------------------------------------------------------------- classification cfgs
def _darknet53_parameters() -> int:
    """Darknet-53's trainable parameters derived from the architecture (YOLOv3 paper, Table 1),
    independently of the parser: a conv with batch norm has k*k*c_in*c_out weights plus a
    scale and a shift per filter; without batch norm, a bias per filter.
    - stem: 3x3, 3 -> 32: 864 + 64 = 928
    - per stage of width F: a stride-2 3x3 from F/2 (4.5 F^2 + 2F), then n residual blocks of a
      1x1 to F/2 and a 3x3 back to F (F^2/2 + F + 4.5 F^2 + 2F = 5 F^2 + 3F each);
      F, n = (64, 1), (128, 2), (256, 8), (512, 8), (1024, 4) -> 40,584,000
    - classifier: 1x1 conv 1024 -> 1000 with biases: 1,025,000
    Total 41,609,928, the ~41.6 M usually quoted for Darknet-53 (the rolling means/variances of
    its 17,856 batch-normalised channels are not trained and not counted)."""
    stages = sum(9 * f * f // 2 + 2 * f + n * (5 * f * f + 3 * f)
                 for f, n in [(64, 1), (128, 2), (256, 8), (512, 8), (1024, 4)])
    return 27 * 32 + 2 * 32 + stages + 1024 * 1000 + 1000


def test_darknet53_classifier_counts_as_derived():
    graph = parse_cfg(CFG / "darknet53.cfg")
    assert _darknet53_parameters() == 41_609_928
    assert trainable_parameter_count(graph) == 41_609_928
    assert len(graph.layers) == 78 and len(graph.of_type("convolutional")) == 53
    pool, classifier, softmax = graph.layers[-3:]
    assert (pool.type, pool.out_channels, pool.out_size) == ("avgpool", 1024, (1, 1))  # 8x8 at 256 px
    assert (classifier.out_channels, softmax.type, softmax.out_channels) == (1000, "softmax", 1000)
    # the backbone YOLOv3 is built on: its first 75 layers, parameter for parameter
    yolov3 = parse_cfg(CFG / "yolov3.cfg")
    assert [layer_parameters(graph, ly) for ly in graph.layers[:75]] == \
           [layer_parameters(yolov3, ly) for ly in yolov3.layers[:75]]


CLASSIFIER = """
[net]
width=8
height=8
channels=3
[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky
[maxpool]
size=2
stride=2
[dropout]
probability=.5
[connected]
output=10
activation=relu
batch_normalize=1
[dropout]
probability=.5
[connected]
output=5
activation=linear
[softmax]
groups=1
[cost]
type=sse
"""


def test_classification_sections_follow_darknet():
    graph = parse_cfg_text(CLASSIFIER, "classifier.cfg")
    assert [(ly.type, ly.out_channels, ly.out_size) for ly in graph.layers] == [
        ("convolutional", 8, (8, 8)), ("maxpool", 8, (4, 4)), ("dropout", 8, (4, 4)),
        ("connected", 10, (1, 1)), ("dropout", 10, (1, 1)), ("connected", 5, (1, 1)),
        ("softmax", 5, (1, 1)), ("cost", 5, (1, 1))]
    # conv 3*8*9 + 2*8 = 232; connected over the flattened 4x4x8 = 128 inputs with batch norm:
    # 128*10 + 10 biases + 10 scales = 1300; connected 10 -> 5: 50 + 5 = 55; the rest: none
    assert [layer_parameters(graph, ly) for ly in graph.layers] == [232, 0, 0, 1300, 0, 55, 0, 0]
    assert trainable_parameter_count(graph) == 1587
    aliases = CLASSIFIER.replace("[connected]", "[conn]").replace("[softmax]", "[soft]")
    assert [ly.type for ly in parse_cfg_text(aliases, "a.cfg").layers] == [ly.type for ly in graph.layers]
    with pytest.raises(ConfigError, match="no \\[yolo\\] layer"):
        parse_cfg_text(CLASSIFIER, "classifier.cfg", classes=3)


@pytest.mark.parametrize("old, new, words", [
    ("[cost]\ntype=sse", "[cost]\ntype=hinge", ["[cost]", "hinge"]),
    ("groups=1", "groups=3", ["[softmax] groups=3", "5 inputs"]),
    ("groups=1", "groups=1\ntree=data/9k.tree", ["[softmax]", "'tree'"]),
    ("output=5\nactivation=linear", "output=5\nactivation=hardtan", ["[connected]", "hardtan"]),
    ("output=5", "output=0", ["[connected] output=0"]),
    ("[dropout]\nprobability=.5\n[connected]\noutput=5", "[dropout]\nprobability=1\n[connected]\noutput=5",
     ["[dropout] probability=1.0"]),
])
def test_bad_classification_options_name_file_and_line(old, new, words):
    text = CLASSIFIER.replace(old, new, 1)
    assert text != CLASSIFIER
    with pytest.raises(ConfigError) as err:
        parse_cfg_text(text, "classifier.cfg")
    assert err.value.key.startswith("classifier.cfg:")
    for word in words:
        assert word in str(err.value)


# ---------------------------------------------------------------- cfg lookup
def test_a_cfg_name_is_found_in_the_lab_directory_first_then_among_the_packaged(tmp_path, monkeypatch):
    monkeypatch.delenv(CFG_DIR_ENV, raising=False)
    assert resolve_cfg("yolov3.cfg", "k") == (CFG / "yolov3.cfg").resolve()
    (tmp_path / "yolov3.cfg").write_text((CFG / "yolov3-tiny.cfg").read_text())
    monkeypatch.setenv(CFG_DIR_ENV, str(tmp_path))
    assert resolve_cfg("yolov3.cfg", "k") == (tmp_path / "yolov3.cfg").resolve()
    assert resolve_cfg("yolov4.cfg", "k") == (CFG / "yolov4.cfg").resolve()
    assert resolve_cfg(str(CFG / "yolov4-tiny.cfg"), "k") == (CFG / "yolov4-tiny.cfg").resolve()


def test_a_cfg_found_nowhere_is_a_config_error_naming_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv(CFG_DIR_ENV, str(tmp_path))
    with pytest.raises(ConfigError) as err:
        resolve_cfg("nope.cfg", "model.variants.tiny.arch.cfg")
    assert err.value.key == "model.variants.tiny.arch.cfg" and err.value.exit_code == 2
    message = str(err.value)
    assert "'nope.cfg' not found" in message and str(tmp_path) in message and str(CFG) in message
    assert "yolov3.cfg" in message and "shared" not in message
    with pytest.raises(ConfigError, match="/abs/nope.cfg"):
        resolve_cfg("/abs/nope.cfg", "k")


def test_classes_override_resizes_the_convs_before_yolo():
    graph = parse_cfg(CFG / "yolov4-tiny.cfg", classes=3)
    assert graph.classes == 3 and [ly.out_channels for ly in graph.yolo_layers] == [24, 24]
    model = build_model(graph)
    outputs = model(torch.zeros(1, 3, 96, 96))
    assert [tuple(o.shape) for o in outputs] == [(1, 24, 3, 3), (1, 24, 6, 6)]


def test_route_group_takes_the_group_id_slice():
    graph = parse_cfg(CFG / "yolov4-tiny.cfg")
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
    assert [(ly.type, ly.out_channels, ly.stride) for ly in graph.layers] == [
        ("convolutional", 16, 2), ("convolutional", 16, 2), ("shortcut", 16, 2), ("route", 8, 2),
        ("maxpool", 8, 4), ("convolutional", 36, 4), ("yolo", 36, 4), ("route", 24, 2),
        ("maxpool", 24, 2), ("convolutional", 12, 2), ("yolo", 12, 2)]
    outputs = build_model(graph)(torch.rand(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outputs] == [(2, 36, 16, 16), (2, 12, 32, 32)]
    more = parse_cfg_text(SYNTHETIC, "synthetic.cfg", classes=2)
    assert [ly.out_channels for ly in more.yolo_layers] == [21, 7]


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


def test_a_fifo_a_device_or_a_huge_file_is_refused_without_reading_it(tmp_path):
    import os

    fifo = tmp_path / "pipe.cfg"
    os.mkfifo(fifo)   # reading it would block forever
    huge = tmp_path / "huge.cfg"
    with open(huge, "wb") as handle:
        handle.truncate(64 << 20)   # sparse: 64 MiB that cost no disk
    for path, words in ((fifo, "not a regular file"), (Path("/dev/zero"), "not a regular file"),
                        (huge, "larger than any darknet cfg")):
        with pytest.raises(DataError, match=words) as err:
            parse_cfg(path)
        assert err.value.path == str(path)


def _randomised(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in list(model.parameters()) + [b for n, b in model.named_buffers() if "running" in n]:
            tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.1)
    return model.eval()


def test_weights_round_trip_gives_identical_tensors_and_outputs(tmp_path):
    graph = parse_cfg(CFG / "yolov4-tiny.cfg", classes=3)
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
    assert weights_file_size(build_model(parse_cfg(CFG / name))) == RELEASED_BYTES[name]


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
    graph = parse_cfg(CFG / "yolov3-tiny.cfg", classes=3)
    path = save_darknet_weights(_randomised(build_model(graph), 3), tmp_path / "full.weights")
    cut = tmp_path / "cut.weights"
    cut.write_bytes(path.read_bytes()[:-400])
    with pytest.raises(DataError, match="ends inside layer 22"):
        load_darknet_weights(build_model(graph), cut)
    with pytest.raises(DataError, match="holds"):
        load_darknet_weights(build_model(parse_cfg(CFG / "yolov3-tiny.cfg", classes=2)), path)
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
    assert darknet_command.run(_command([str(CFG / "yolov3-tiny.cfg")])) == 0
    out = capsys.readouterr().out
    assert "trainable parameters: 8,852,366" in out and "maxpool" in out
    assert darknet_command.run(_command([str(CFG / "yolov4-tiny.cfg"), "--classes", "3", "--json"])) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["classes"] == 3 and info["trainable_params"] == 5_878_736 and len(info["layers"]) == 38
    assert info["layers"][37] == {"index": 37, "type": "yolo", "out_channels": 24, "stride": 16,
                                  "inputs": [36], "line": info["layers"][37]["line"], "out_size": [26, 26]}


def test_darknet_command_finds_packaged_cfgs_by_name_and_counts_classifiers(capsys):
    assert darknet_command.run(_command(["darknet53.cfg"])) == 0
    out = capsys.readouterr().out
    assert "trainable parameters: 41,609,928" in out and "avgpool" in out and "classes" not in out
    assert darknet_command.run(_command(["yolov4.cfg", "--json"])) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["trainable_params"] == PARAMS["yolov4.cfg"] and info["classes"] == 80


def test_darknet_command_bad_path_is_a_user_error(tmp_path):
    with pytest.raises(DataError) as err:
        darknet_command.run(_command([str(tmp_path / "missing.cfg")]))
    assert err.value.exit_code == 2 and "missing.cfg" in str(err.value)


def test_a_classification_cfg_is_counted_but_never_built_as_a_detector():
    """[avgpool]/[softmax] parse (replicate darknet counts them); building one must refuse, not
    put a pass-through where the layer was."""
    from replicate.errors import ConfigError
    from zoo_models.darknet.cfg_parser import build_graph, find_cfg, read_sections
    from zoo_models.darknet.torch_backend import build_model

    path = find_cfg("darknet53.cfg")
    graph = build_graph(read_sections(path.read_text(), str(path)), str(path))
    with pytest.raises(ConfigError, match=r"\[avgpool\] cannot be built"):
        build_model(graph)
