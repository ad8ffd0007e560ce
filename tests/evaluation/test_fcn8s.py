"""The authors' FCN-8s (replicate/evaluation/fcn8s.py, caffemodel.py) against deploy.prototxt
restated in numpy (tests/fcn8s_reference.py), on caffemodel files written in Caffe's own format
with random weights under the real layer names; and the files it must refuse, by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from replicate.errors import DataError
from replicate.evaluation import fcn8s
from replicate.evaluation.caffemodel import read_caffemodel
from replicate.evaluation.fcn_score import load_segmenter
from tests import fcn8s_reference as ref

NARROW = 1 / 16      # VGG widths 4..32 and fc6/fc7 16 wide: the real names, kernels, pads and crops


def widths_of(blobs: dict[str, list[np.ndarray]]) -> fcn8s.Widths:
    stages = tuple(tuple(blobs[f"conv{s}_{i}"][0].shape[0] for i in range(1, 4) if f"conv{s}_{i}" in blobs)
                   for s in range(1, 6))
    return fcn8s.Widths(stages=stages, fc=blobs["fc6_cs"][0].shape[0])


@pytest.fixture(scope="module")
def narrow():
    return ref.random_weights(np.random.default_rng(0), width=NARROW, fc=16)


def write(tmp_path, blobs, name="fcn-8s-cityscapes.caffemodel", v1=False):
    path = tmp_path / name
    path.write_bytes(ref.caffemodel_bytes(blobs, v1=v1))
    return path


def test_the_writer_writes_what_protobuf_reads_as_caffe_protos_blobs(narrow):
    """The test's own writer against caffe.proto's typed declaration (float data, packed)."""
    F = descriptor_pb2.FieldDescriptorProto
    schema = descriptor_pb2.FileDescriptorProto(name="caffe_typed.proto", package="t", syntax="proto2")
    typed = {"BlobShape": [("dim", 1, F.TYPE_INT64, "")],
             "BlobProto": [("shape", 7, F.TYPE_MESSAGE, ".t.BlobShape"), ("data", 5, F.TYPE_FLOAT, "")],
             "LayerParameter": [("name", 1, F.TYPE_STRING, ""), ("blobs", 7, F.TYPE_MESSAGE, ".t.BlobProto")],
             "NetParameter": [("layer", 100, F.TYPE_MESSAGE, ".t.LayerParameter")]}
    for message, fields in typed.items():
        declared = schema.message_type.add(name=message)
        for name, number, kind, type_name in fields:
            label = F.LABEL_OPTIONAL if name in ("shape", "name") else F.LABEL_REPEATED
            field = declared.field.add(name=name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = type_name
            if kind in (F.TYPE_FLOAT, F.TYPE_INT64):
                field.options.packed = True
    pool = descriptor_pool.DescriptorPool()
    pool.Add(schema)
    net = message_factory.GetMessageClass(pool.FindMessageTypeByName("t.NetParameter"))()
    net.ParseFromString(ref.caffemodel_bytes(narrow))
    layer = {layer.name: layer for layer in net.layer}["score_pool3"]
    assert list(layer.blobs[0].shape.dim) == [20, 16, 1, 1]
    np.testing.assert_array_equal(np.array(layer.blobs[0].data, np.float32), narrow["score_pool3"][0].ravel())


@pytest.mark.parametrize("v1", [False, True], ids=["layer", "V1 layers"])
def test_the_reader_returns_every_blob_of_both_formats(tmp_path, narrow, v1):
    read = read_caffemodel(write(tmp_path, narrow, v1=v1))
    assert sorted(read) == sorted(narrow)        # layers without weights (ReLU, Crop, ...) are not listed
    for name, found in narrow.items():
        assert [b.as_shape(a.shape).tolist() for b, a in zip(read[name], found)] == [a.tolist() for a in found]
    assert read["conv1_1"][1].legacy == v1 and read["conv1_1"][1].shape == ((1, 1, 1, 4) if v1 else (4,))


@pytest.mark.parametrize("size", [(21, 35), (32, 64), (8, 9)])
def test_the_network_is_deploy_prototxt_restated(tmp_path, narrow, size):
    """Scores within 1e-5 of the numpy restatement of deploy.prototxt (odd sizes: Caffe's ceil
    pooling decides the skip branches' alignment), and the segmenter's classes its argmax."""
    segmenter = fcn8s.AuthorsFCN8s(write(tmp_path, narrow), widths=widths_of(narrow))
    image = np.random.default_rng(1).integers(0, 256, (*size, 3), dtype=np.uint8)
    data = ref.preprocess(image)
    np.testing.assert_allclose(segmenter.preprocess(image)[0].numpy(), data, rtol=0, atol=1e-5)
    expected = ref.forward(narrow, data)
    with torch.no_grad():
        got = segmenter.net(torch.from_numpy(data.copy())[None])[0].double().numpy()
    assert got.shape == expected.shape == (20, *size)
    scale = np.abs(expected).max()
    assert 0.1 < scale < 1e4                                       # neither vanished nor blown up
    assert np.abs(got - expected).max() <= 1e-5 * scale, np.abs(got - expected).max() / scale
    classes = segmenter(image)
    assert classes.dtype == np.uint8 and np.array_equal(classes, ref.scoremap(expected))


@pytest.mark.slow
def test_the_authors_shapes_load_and_run(tmp_path):
    """The real widths (fc6 is 4096 x 512 x 7 x 7: a 538 MB file), read through load_segmenter."""
    blobs = ref.random_weights(np.random.default_rng(2))
    path = write(tmp_path, blobs)
    segmenter = load_segmenter(path)
    assert isinstance(segmenter, fcn8s.AuthorsFCN8s)
    image = np.random.default_rng(3).integers(0, 256, (9, 13, 3), dtype=np.uint8)
    expected = ref.forward(blobs, ref.preprocess(image))
    with torch.no_grad():
        got = segmenter.net(segmenter.preprocess(image))[0].double().numpy()
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()


def test_files_that_are_not_the_authors_fcn_are_refused_naming_them(tmp_path, narrow):
    widths = widths_of(narrow)
    good = ref.caffemodel_bytes(narrow)
    cases = {"truncated.caffemodel": good[: len(good) // 2],
             "text.caffemodel": b"layer {\n  name: \"conv1_1\"\n  type: \"Convolution\"\n}\n" * 50,
             "random.caffemodel": np.random.default_rng(4).bytes(4096),
             "empty.caffemodel": b""}
    misshapen = dict(narrow, fc6_cs=[narrow["fc6_cs"][0][:, :, :6, :6], narrow["fc6_cs"][1]])
    cases["misshapen.caffemodel"] = ref.caffemodel_bytes(misshapen)
    cases["missing.caffemodel"] = ref.caffemodel_bytes({k: v for k, v in narrow.items() if k != "upscore8"})
    cases["short.caffemodel"] = ref.caffemodel_bytes(dict(narrow, score_fr=narrow["score_fr"][:1]))
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DataError) as caught:
            fcn8s.load_fcn8s(path, widths)
        assert caught.value.path == str(path) and caught.value.exit_code == 2, name
    with pytest.raises(DataError, match="layer 'fc6_cs' weight is .*6, 6.*the FCN-8s's is .*7, 7"):
        fcn8s.load_fcn8s(tmp_path / "misshapen.caffemodel", widths)
    with pytest.raises(DataError, match="no weights for layer 'upscore8'"):
        fcn8s.load_fcn8s(tmp_path / "missing.caffemodel", widths)
    with pytest.raises(DataError, match="larger than a Caffe FCN-8s"):
        read_caffemodel(write(tmp_path, narrow), max_bytes=1000)
    with pytest.raises(DataError, match="not readable"):
        read_caffemodel(tmp_path / "absent.caffemodel")
    # the authors' widths refuse a narrow file: it is not their network
    with pytest.raises(DataError, match=r"layer 'conv1_1' weight is \[4, 3, 3, 3\], the FCN-8s's is \[64, 3, 3, 3\]"):
        load_segmenter(write(tmp_path, narrow))


def test_a_blob_whose_values_do_not_fill_its_shape_is_refused(tmp_path, narrow):
    content = ref.caffemodel_bytes(narrow)
    # the packed data of score_fr's bias holds 20 floats (80 bytes): declare 21 in its shape
    bias = narrow["score_fr"][1]
    shape = b"\x3a\x03\x0a\x01\x14"                       # shape { dim: 20 } as the writer encodes it
    blob = shape + b"\x2a\x50" + bias.astype("<f4").tobytes()
    assert content.count(blob) == 1
    path = tmp_path / "short_blob.caffemodel"
    path.write_bytes(content.replace(blob, b"\x3a\x03\x0a\x01\x15" + blob[len(shape):]))
    with pytest.raises(DataError, match="layer 'score_fr' blob 1 holds 20 values for its shape \\[21\\]"):
        read_caffemodel(path)
