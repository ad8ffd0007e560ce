"""TensorFlow/Keras Darknet backend: builds, .weights round trip, torch-vs-TF differential.

The differential loads the same Darknet .weights into both backends and compares every layer's
output, so a mismatch names the first differing layer; a perturbed weight must be caught.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from replicate import tf_import
from replicate.errors import ConfigError, DataError
from replicate.tf_import import tf_available
from zoo_models.darknet.cfg_parser import PACKAGED_CFG_DIR, parse_cfg, parse_cfg_text
from zoo_models.darknet.tf_differential import (
    DEFAULT_ATOL,
    compare_models,
    random_images,
    run_differential,
    write_random_weights,
)

CFG = PACKAGED_CFG_DIR  # the cfgs the product runs (models/zoo_models/darknet/cfg/)
if not tf_available():
    pytest.skip("tensorflow is not installed (pip install -e '.[tensorflow]')", allow_module_level=True)

from zoo_models.darknet import tf_backend, tf_weights  # noqa: E402  (after the TF skip; neither imports TF)
from zoo_models.darknet.torch_backend import build_model as build_torch  # noqa: E402
from zoo_models.darknet.torch_backend import trainable_parameters as torch_params  # noqa: E402
from zoo_models.darknet.weights import load_darknet_weights as load_torch_weights  # noqa: E402


@pytest.mark.parametrize("name", ["yolov3-tiny.cfg", "yolov4-tiny.cfg", "yolov3.cfg"])
def test_keras_build_has_the_torch_builds_trainable_parameters(name):
    graph = parse_cfg(CFG / name, classes=80)
    expected = 61_949_149 if name == "yolov3.cfg" else torch_params(build_torch(graph))  # conf/model/yolov3.yaml
    assert tf_backend.trainable_parameters(tf_backend.build_model(graph)) == expected


def test_weights_round_trip_gives_identical_tensors_and_outputs(tmp_path, tf):
    graph = parse_cfg(CFG / "yolov4-tiny.cfg", classes=3)
    images = random_images(2, 64)
    path = write_random_weights(graph, tmp_path / "a.weights", seed=0, images=images)
    first, second = tf_backend.build_model(graph), tf_backend.build_model(graph)
    info = tf_weights.load_darknet_weights(first, path)
    assert info.conv_layers_loaded == info.conv_layers_total == 21
    again = tf_weights.save_darknet_weights(first, tmp_path / "b.weights", seen=info.seen,
                                            version=(info.major, info.minor, info.revision))
    assert again.read_bytes() == path.read_bytes()   # header included
    tf_weights.load_darknet_weights(second, again)
    for a, b in zip(first.weights, second.weights):
        assert np.array_equal(a.numpy(), b.numpy()), a.path
    x = tf.constant(np.transpose(images, (0, 2, 3, 1)))
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(first(x), second(x)))


@pytest.mark.parametrize("version, seen, header_bytes", [((0, 2, 5), 123_456_789_012, 20), ((0, 1, 0), 77, 16)])
def test_weights_header_round_trips_with_64_and_32_bit_seen(tmp_path, version, seen, header_bytes):
    graph = parse_cfg(CFG / "yolov3-tiny.cfg", classes=3)
    source = tf_backend.build_model(graph)
    tf_weights.load_darknet_weights(source, write_random_weights(graph, tmp_path / "r.weights"))
    path = tf_weights.save_darknet_weights(source, tmp_path / "v.weights", seen=seen, version=version)
    info = tf_weights.load_darknet_weights(tf_backend.build_model(graph), path)
    assert (info.major, info.minor, info.revision, info.seen) == (*version, seen)
    # what darknet (and the torch reader) sees: the same header, body right after it
    torch_info = load_torch_weights(build_torch(graph), path)
    assert (torch_info.major, torch_info.minor, torch_info.revision, torch_info.seen) == (*version, seen)
    again = tf_weights.save_darknet_weights(tf_backend.build_model(graph), tmp_path / "w.weights")
    assert path.stat().st_size - header_bytes == again.stat().st_size - 20


@pytest.mark.parametrize("size", [16, 18, 19])
def test_a_file_shorter_than_its_64_bit_header_is_a_data_error_naming_it(tmp_path, size):
    path = tmp_path / "short.weights"
    path.write_bytes((np.array((0, 2, 5), "<i4").tobytes() + bytes(8))[:size])
    with pytest.raises(DataError, match=r"short\.weights.*too short for a version 0\.2 header"):
        tf_weights.load_darknet_weights(tf_backend.build_model(parse_cfg(CFG / "yolov3-tiny.cfg")), path)


BN_CFG = """[net]
width=4
height=4
channels=3
[convolutional]
batch_normalize=1
filters=4
size=3
stride=1
pad=1
activation=leaky
[convolutional]
batch_normalize=1
filters=4
size=3
stride=2
pad=1
activation=leaky
"""


def test_training_mode_updates_moving_statistics_as_torch_does(tmp_path, tf):
    # 2 images of 4x4: n = 32 values per channel at layer 0, 8 at layer 1, where the biased and
    # unbiased variances differ by 1/(n-1); momentum 0.5 so the batch statistics weigh in visibly
    graph = parse_cfg_text(BN_CFG, "bn.cfg")
    torch_model, tf_model = build_torch(graph, 0.5), tf_backend.build_model(graph, 0.5)
    path = write_random_weights(graph, tmp_path / "bn.weights", seed=1)
    load_torch_weights(torch_model, path)
    tf_weights.load_darknet_weights(tf_model, path)
    images = random_images(2, 4)
    torch_model.train()
    with torch.no_grad():
        torch_model(torch.from_numpy(images))
    tf_model(tf.constant(np.transpose(images, (0, 2, 3, 1))), training=True)
    for (layer, torch_block), (_, tf_block) in zip(torch_model.conv_blocks(), tf_model.conv_blocks()):
        np.testing.assert_allclose(tf_block.bn.moving_mean.numpy(), torch_block.bn.running_mean.numpy(),
                                   atol=1e-5, err_msg=f"layer {layer.index} mean")
        np.testing.assert_allclose(tf_block.bn.moving_variance.numpy(), torch_block.bn.running_var.numpy(),
                                   atol=1e-5, err_msg=f"layer {layer.index} variance")


def test_truncated_weights_name_the_layer(tmp_path):
    graph = parse_cfg(CFG / "yolov3-tiny.cfg", classes=3)
    path = write_random_weights(graph, tmp_path / "full.weights")
    cut = tmp_path / "cut.weights"
    cut.write_bytes(path.read_bytes()[:-400])
    with pytest.raises(DataError, match="ends inside layer 22"):
        tf_weights.load_darknet_weights(tf_backend.build_model(graph), cut)


@pytest.mark.parametrize("name", ["yolov3-tiny.cfg", "yolov4-tiny.cfg"])
def test_torch_and_tensorflow_agree_on_every_layer(name):
    graph = parse_cfg(CFG / name, classes=3)
    report, _, _ = run_differential(graph, random_images(2, 96))
    assert report.ok, report.summary()
    assert len(report.layers) == len(graph.layers) and len(report.heads) == 2
    assert report.max_head_diff <= DEFAULT_ATOL
    if name == "yolov3-tiny.cfg":  # the size-2 stride-1 maxpool keeps the map size in both
        assert graph.layers[11].type == "maxpool" and report.layers[11].shape[1:3] == (3, 3)


@pytest.mark.parametrize("index, variable", [(8, "kernel"), (13, "moving_mean")])
def test_a_perturbed_weight_fails_and_names_the_first_differing_layer(index, variable):
    graph = parse_cfg(CFG / "yolov3-tiny.cfg", classes=3)
    images = random_images(2, 96)
    _, torch_model, tf_model = run_differential(graph, images)
    block = next(b for layer, b in tf_model.conv_blocks() if layer.index == index)
    target = block.conv.kernel if variable == "kernel" else block.bn.moving_mean
    value = target.numpy()
    value.flat[0] += 0.05
    target.assign(value)
    report = compare_models(torch_model, tf_model, images)
    assert not report.ok
    assert (report.first_mismatch.index, report.first_mismatch.type) == (index, "convolutional")
    assert f"first differing layer {index} (convolutional)" in report.summary()


def _misrouted_forward(self, x):
    """DarknetModel.forward with a routing defect: multi-input routes concatenate in reverse."""
    saved, heads = {}, []
    for layer, module in zip(self.graph.layers, self.layers):
        if layer.type in ("route", "shortcut"):
            x = module(*reversed([x if i == layer.index - 1 else saved[i] for i in layer.inputs]))
        elif layer.type == "yolo":
            heads.append(x)
        else:
            x = module(x)
        saved[layer.index] = x
    return heads


def test_the_differential_compares_the_production_torch_forward():
    # a routing defect inside DarknetModel.forward must be seen: the torch side is captured from
    # the production forward, not from a re-implementation of its routing
    graph = parse_cfg(CFG / "yolov3-tiny.cfg", classes=3)
    images = random_images(2, 96)
    _, torch_model, tf_model = run_differential(graph, images)
    torch_model.forward = types.MethodType(_misrouted_forward, torch_model)
    report = compare_models(torch_model, tf_model, images)
    assert not report.ok
    first = next(layer for layer in graph.layers if layer.type == "route" and len(layer.inputs) > 1)
    assert (report.first_mismatch.index, report.first_mismatch.type) == (first.index, "route")


def test_route_groups_upsample_and_spp_pools_agree():
    # a synthetic cfg of the family: SPP pools (5/9/13, stride 1), a grouped route, mish, linear
    text = """[net]
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
[maxpool]
size=5
stride=1
[route]
layers=-2
[maxpool]
size=9
stride=1
[route]
layers=-4
[maxpool]
size=13
stride=1
[route]
layers=-1,-3,-5,-6
[route]
layers=-1
groups=2
group_id=1
[convolutional]
filters=8
size=1
stride=1
pad=1
activation=linear
[upsample]
stride=2
[maxpool]
size=3
stride=2
"""
    graph = parse_cfg_text(text, "spp.cfg")
    report, _, _ = run_differential(graph, random_images(1, 64))
    assert report.ok, report.summary()


def test_missing_tensorflow_is_a_config_error_naming_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)   # import tensorflow -> ImportError
    with pytest.raises(ConfigError, match=r"tensorflow is not installed.*\[tensorflow\]"):
        tf_import.tensorflow()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["yolov3.cfg", "yolov4.cfg"])
def test_full_cfgs_agree_between_torch_and_tensorflow(name):
    graph = parse_cfg(CFG / name, classes=80)
    report, _, _ = run_differential(graph, random_images(2, 128))
    assert report.ok, report.summary()
