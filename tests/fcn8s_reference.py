"""The pix2pix authors' FCN-8s segmenter restated in numpy, and caffemodel files written in Caffe's
wire format, for tests (written from the references, independently of replicate/evaluation).

* :func:`forward` restates ``scripts/eval_cityscapes/caffemodel/deploy.prototxt``
  (phillipi/pix2pix 89ff2a8) layer by layer, with Caffe's layer semantics read from
  BVLC/caffe 9b89154: ``conv_layer`` (cross-correlation, weight [out, in, kh, kw]),
  ``pooling_layer.cpp`` (MAX, output size ceil((H - k) / s) + 1, windows clipped at the edge),
  ``deconv_layer`` (output s * (H - 1) + k, weight [in, out, kh, kw], each input pixel adding
  its kernel at stride s), ``crop_layer.cpp`` (axis 2, one offset for H and W), ``eltwise_layer``
  (SUM, coefficients 1), in float64.
* :func:`preprocess` restates ``cityscapes.py`` ``preprocess`` and :func:`scoremap`
  ``util.py`` ``get_out_scoremap``.
* :func:`caffemodel_bytes` writes a ``caffe.NetParameter`` as Caffe's ``Net::ToProto`` does
  (caffe.proto field numbers; every layer, with or without weights; ``BlobProto.shape`` and packed
  float ``data``), or in the deprecated V1 format with 4-D legacy blob dims.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

MEAN = np.array((72.78044, 83.21195, 73.45286), dtype=np.float32)   # cityscapes.py self.mean

# deploy.prototxt, in order: (name, type, kernel, stride, pad, num_output) for the learned layers
VGG = [("conv1_1", 64, 100), ("conv1_2", 64, 1), ("conv2_1", 128, 1), ("conv2_2", 128, 1),
       ("conv3_1", 256, 1), ("conv3_2", 256, 1), ("conv3_3", 256, 1),
       ("conv4_1", 512, 1), ("conv4_2", 512, 1), ("conv4_3", 512, 1),
       ("conv5_1", 512, 1), ("conv5_2", 512, 1), ("conv5_3", 512, 1)]
POOL_AFTER = {"conv1_2": "pool1", "conv2_2": "pool2", "conv3_3": "pool3", "conv4_3": "pool4", "conv5_3": "pool5"}


def random_weights(rng: np.random.Generator, width: float = 1.0, fc: int = 4096) -> dict[str, list[np.ndarray]]:
    """Blobs of every learned layer of deploy.prototxt (``width`` scales the VGG widths, ``fc`` is
    fc6/fc7's), He-scaled so that scores neither vanish nor blow up through 20 layers."""
    def normal(shape, fan_in):
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))

    blobs, channels, widths = {}, 3, {}
    for name, out, _ in VGG:
        out = max(1, int(out * width))
        blobs[name] = [normal((out, channels, 3, 3), channels * 9), (rng.standard_normal(out) * 0.1).astype(np.float32)]
        widths[name] = channels = out
    blobs["fc6_cs"] = [normal((fc, channels, 7, 7), channels * 49), (rng.standard_normal(fc) * 0.1).astype(np.float32)]
    blobs["fc7_cs"] = [normal((fc, fc, 1, 1), fc), (rng.standard_normal(fc) * 0.1).astype(np.float32)]
    for name, fan_in in (("score_fr", fc), ("score_pool4", widths["conv4_3"]), ("score_pool3", widths["conv3_3"])):
        blobs[name] = [normal((20, fan_in, 1, 1), fan_in), (rng.standard_normal(20) * 0.1).astype(np.float32)]
    for name, kernel, stride in (("upscore2", 4, 2), ("upscore_pool4", 4, 2), ("upscore8", 16, 8)):
        blobs[name] = [normal((20, 20, kernel, kernel), 20 * (kernel // stride) ** 2)]   # no bias_term
    return blobs


# ----------------------------------------------------------------------------- Caffe's layers
def convolution(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, pad: int) -> np.ndarray:
    """conv_layer, stride 1: out[o, y, x] = b[o] + sum W[o, c, i, j] * padded[c, y + i, x + j]."""
    k = weight.shape[-1]
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    windows = sliding_window_view(padded, (k, k), axis=(1, 2))            # [C, H', W', k, k]
    return np.tensordot(weight, windows, axes=([1, 2, 3], [0, 3, 4])) + bias[:, None, None]


def max_pool(x: np.ndarray, kernel: int = 2, stride: int = 2) -> np.ndarray:
    """pooling_layer.cpp MAX, pad 0: ceil((H - k) / s) + 1 outputs, the last window clipped."""
    channels, height, width = x.shape
    out_h = -(-(height - kernel) // stride) + 1
    out_w = -(-(width - kernel) // stride) + 1
    out = np.empty((channels, out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            window = x[:, i * stride:min(i * stride + kernel, height), j * stride:min(j * stride + kernel, width)]
            out[:, i, j] = window.max(axis=(1, 2))
    return out


def deconvolution(x: np.ndarray, weight: np.ndarray, stride: int) -> np.ndarray:
    """deconv_layer, no bias, pad 0: out[o, y * s + i, x * s + j] += W[c, o, i, j] * x[c, y, x]."""
    _, height, width = x.shape
    k = weight.shape[-1]
    out = np.zeros((weight.shape[1], stride * (height - 1) + k, stride * (width - 1) + k))
    for i in range(k):
        for j in range(k):
            out[:, i:i + stride * (height - 1) + 1:stride, j:j + stride * (width - 1) + 1:stride] += \
                np.einsum("chw,co->ohw", x, weight[:, :, i, j])
    return out


def crop_to(x: np.ndarray, like: np.ndarray, offset: int) -> np.ndarray:
    """crop_layer.cpp, axis 2, one offset: H and W from ``offset``, to ``like``'s H and W."""
    height, width = like.shape[-2:]
    assert x.shape[-2] - offset >= height and x.shape[-1] - offset >= width, "crop out of bounds"
    return x[:, offset:offset + height, offset:offset + width]


def forward(blobs: dict[str, list[np.ndarray]], data: np.ndarray) -> np.ndarray:
    """deploy.prototxt from ``data`` [3, H, W] to ``score`` [20, H, W], in float64."""
    p = {name: [b.astype(np.float64) for b in found] for name, found in blobs.items()}
    top = {"data": data.astype(np.float64)}
    h = top["data"]
    for name, _, pad in VGG:
        h = np.maximum(convolution(h, *p[name], pad=pad), 0)              # ReLU in place
        if name in POOL_AFTER:
            h = top[POOL_AFTER[name]] = max_pool(h)
    h = np.maximum(convolution(h, *p["fc6_cs"], pad=0), 0)
    h = np.maximum(convolution(h, *p["fc7_cs"], pad=0), 0)
    score_fr = convolution(h, *p["score_fr"], pad=0)
    upscore2 = deconvolution(score_fr, p["upscore2"][0], 2)
    fuse_pool4 = upscore2 + crop_to(convolution(top["pool4"], *p["score_pool4"], pad=0), upscore2, 5)
    upscore_pool4 = deconvolution(fuse_pool4, p["upscore_pool4"][0], 2)
    fuse_pool3 = upscore_pool4 + crop_to(convolution(top["pool3"], *p["score_pool3"], pad=0), upscore_pool4, 9)
    return crop_to(deconvolution(fuse_pool3, p["upscore8"][0], 8), top["data"], 31)


def preprocess(image: np.ndarray) -> np.ndarray:
    """cityscapes.py preprocess: float32, RGB -> BGR, minus the mean, to [3, H, W]."""
    in_ = np.array(image, dtype=np.float32)[:, :, ::-1]
    in_ = in_ - MEAN
    return in_.transpose((2, 0, 1))


def scoremap(score: np.ndarray) -> np.ndarray:
    """util.py get_out_scoremap: argmax over the classes, as uint8."""
    return score.argmax(axis=0).astype(np.uint8)


# ------------------------------------------------------------------ protobuf wire format
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:      # wire type 2: length-delimited
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _int(number: int, value: int) -> bytes:            # wire type 0: varint
    return _varint(number << 3) + _varint(value)


def _blob(array: np.ndarray, legacy: bool) -> bytes:
    data = _field(5, np.ascontiguousarray(array, dtype="<f4").tobytes())     # repeated float data = 5 [packed]
    if legacy:                                          # num = 1, channels = 2, height = 3, width = 4
        dims = (1,) * (4 - array.ndim) + array.shape
        return b"".join(_int(n, d) for n, d in zip((1, 2, 3, 4), dims)) + data
    shape = _field(1, b"".join(_varint(d) for d in array.shape))            # BlobShape: packed int64 dim = 1
    return _field(7, shape) + data


LAYER_TYPES = {"conv": ("Convolution", 4), "deconv": ("Deconvolution", 39)}   # V1LayerParameter.LayerType


def caffemodel_bytes(blobs: dict[str, list[np.ndarray]], v1: bool = False) -> bytes:
    """A NetParameter with deploy.prototxt's layers, learned ones carrying ``blobs``.

    New format: ``name`` 1, ``layer`` 100 (LayerParameter: name 1, type 2, bottom 3, top 4,
    blobs 7, ``phase`` 10 and a ``convolution_param`` 106 that a reader of weights must skip).
    V1: ``layers`` 2 (V1LayerParameter: bottom 2, top 3, name 4, type 5 an enum, blobs 6)."""
    net = [_field(1, b"FCN8s-cityscapes")]
    order = ["data", *[n for n, _, _ in VGG], "fc6_cs", "fc7_cs", "score_fr", "upscore2", "score_pool4",
             "score_pool4c", "fuse_pool4", "upscore_pool4", "score_pool3", "score_pool3c", "fuse_pool3", "upscore8",
             "score"]
    for name in order:
        found = blobs.get(name, [])
        kind = "deconv" if name.startswith("upscore") else "conv"
        if v1:
            layer = (_field(2, b"bottom") + _field(3, name.encode()) + _field(4, name.encode())
                     + _int(5, LAYER_TYPES[kind][1]) + b"".join(_field(6, _blob(b, True)) for b in found))
            net.append(_field(2, layer))
        else:
            settings = _field(106, _int(1, len(found[0]) if found else 0) + _int(4, 3)) if found else b""
            layer = (_field(1, name.encode()) + _field(2, LAYER_TYPES[kind][0].encode() if found else b"Crop")
                     + _field(3, b"bottom") + _field(4, name.encode()) + _int(10, 1)
                     + b"".join(_field(7, _blob(b, False)) for b in found) + settings)
            net.append(_field(100, layer))
    return b"".join(net)

