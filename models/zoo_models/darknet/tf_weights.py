"""Darknet ``.weights`` files <-> the Keras build of ``models/zoo_models/darknet/tf_backend.py``.

Same format as ``models/zoo_models/darknet/weights.py`` (pjreddie/darknet and AlexeyAB/darknet ``parser.c``
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

from zoo_models.darknet.weights import WRITE_VERSION, WeightsInfo, fill_conv_blocks, write_weights_file

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
    def assign(block: Any, chunks: list[np.ndarray]) -> None:
        for (variable, is_kernel), chunk in zip(_conv_variables(block), chunks):
            chunk = chunk.reshape(_file_shape(variable, is_kernel))
            variable.assign(np.transpose(chunk, TO_KERAS) if is_kernel else chunk)

    def sizes(block: Any) -> list[int]:
        return [int(np.prod(v.shape)) for v, _ in _conv_variables(block)]

    return fill_conv_blocks(path, model.conv_blocks(), sizes, assign, strict)


def save_darknet_weights(model: Any, path: str | Path, seen: int = 0,
                         version: tuple[int, int, int] = WRITE_VERSION) -> Path:
    """Write a Keras Darknet model's conv layers as a .weights file darknet can load."""
    arrays = (np.transpose(variable.numpy(), TO_DARKNET) if is_kernel else variable.numpy()
              for _, block in model.conv_blocks() for variable, is_kernel in _conv_variables(block))
    return write_weights_file(path, version, seen, arrays)
