"""Darknet ``.weights`` files <-> the Keras build of ``models/darknet/tf_backend.py``.

Same format as ``models/darknet/weights.py`` (pjreddie/darknet and AlexeyAB/darknet ``parser.c``
load_weights / save_weights; public domain / YOLO licence): the header, then per
[convolutional] with batch norm its beta, gamma, rolling mean, rolling variance, else its bias;
then the kernel stored ``[filters, in_channels / groups, size, size]``. Keras keeps kernels as
``[size, size, in_channels / groups, filters]``, so kernels are transposed on the way in and out.
The header reader is shared with the torch side so both read a file identically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.darknet.weights import WRITE_VERSION, WeightsInfo, read_weights_file, write_weights_file
from replicate.errors import DataError

# darknet kernel [O, I/g, kh, kw] <-> keras kernel [kh, kw, I/g, O]
TO_KERAS = (2, 3, 1, 0)
TO_DARKNET = (3, 2, 0, 1)


def _conv_variables(block: Any) -> list[tuple[Any, bool]]:
    """(variable, is_kernel) of one conv block in file order."""
    if block.bn is not None:
        bn = block.bn
        return [(bn.beta, False), (bn.gamma, False), (bn.moving_mean, False), (bn.moving_variance, False),
                (block.conv.kernel, True)]
    return [(block.conv.bias, False), (block.conv.kernel, True)]


def _file_shape(variable: Any, is_kernel: bool) -> tuple[int, ...]:
    shape = tuple(int(d) for d in variable.shape)
    return tuple(shape[i] for i in TO_DARKNET) if is_kernel else shape


def load_darknet_weights(model: Any, path: str | Path, strict: bool = True) -> WeightsInfo:
    """Copy a .weights file into a Keras Darknet model (in place); see weights.load_darknet_weights.

    Raises:
        DataError: The file is missing, truncated mid-layer, too short or too long (strict).
    """
    path = Path(path)
    (major, minor, revision, seen), values = read_weights_file(path)
    blocks = model.conv_blocks()
    position, loaded = 0, 0
    for layer, block in blocks:
        variables = _conv_variables(block)
        need = sum(int(np.prod(v.shape)) for v, _ in variables)
        if position == len(values) and not strict:
            break
        if position + need > len(values):
            raise DataError(str(path), f"ends inside layer {layer.index} ({layer.where()}): needs {need} "
                                       f"values, {len(values) - position} left; wrong cfg or classes?")
        for variable, is_kernel in variables:
            shape = _file_shape(variable, is_kernel)
            chunk = values[position:position + int(np.prod(shape))].reshape(shape)
            variable.assign(np.transpose(chunk, TO_KERAS) if is_kernel else chunk)
            position += chunk.size
        loaded += 1
    if strict and (loaded < len(blocks) or position != len(values)):
        raise DataError(str(path), f"holds {len(values)} values; the model's {len(blocks)} conv layers take "
                                   f"{position} (wrong cfg or number of classes?)")
    return WeightsInfo(major, minor, revision, seen, loaded, len(blocks))


def save_darknet_weights(model: Any, path: str | Path, seen: int = 0,
                         version: tuple[int, int, int] = WRITE_VERSION) -> Path:
    """Write a Keras Darknet model's conv layers as a .weights file darknet can load."""
    arrays = (np.transpose(variable.numpy(), TO_DARKNET) if is_kernel else variable.numpy()
              for _, block in model.conv_blocks() for variable, is_kernel in _conv_variables(block))
    return write_weights_file(path, version, seen, arrays)
