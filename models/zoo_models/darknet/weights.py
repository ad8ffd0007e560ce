"""Darknet ``.weights`` files <-> a ``DarknetModel``'s tensors.

Format (pjreddie/darknet and AlexeyAB/darknet ``parser.c`` load_weights / save_weights; YOLOv3
arXiv:1804.02767, YOLOv4 arXiv:2004.10934; public domain / YOLO licence), little-endian:

* header: ``major``, ``minor``, ``revision`` as int32, then ``seen`` (images trained on) as int64
  when ``major * 10 + minor >= 2`` (and both < 1000), else int32;
* then, for every [convolutional] layer in order: with batch norm its beta (bias), gamma (scale),
  rolling mean and rolling variance, else the conv bias; then the kernel
  ``[filters, in_channels / groups, size, size]``; all float32. Other layers carry nothing.

Darknet reads files that stop early (e.g. ``darknet53.conv.74``, the first 74 layers) and loads
what is there: ``strict=False`` does the same; ``strict=True`` (evaluation of a released
checkpoint) demands exactly one value per parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from replicate.errors import DataError
from zoo_models.darknet.torch_backend import ConvBlock, DarknetModel

# AlexeyAB save_weights writes version 0.2.5 with a 64-bit ``seen``.
WRITE_VERSION = (0, 2, 5)


@dataclass
class WeightsInfo:
    """What a .weights file held: its header and how many conv layers were loaded."""

    major: int
    minor: int
    revision: int
    seen: int
    conv_layers_loaded: int
    conv_layers_total: int


def seen_is_64bit(major: int, minor: int) -> bool:
    """Whether a header of this version stores ``seen`` as int64 (parser.c load_weights)."""
    return major * 10 + minor >= 2 and major < 1000 and minor < 1000


def _conv_tensors(block: ConvBlock) -> list[torch.Tensor]:
    """Tensors of one conv layer in file order."""
    if block.bn is not None:
        bn = block.bn
        assert bn.running_mean is not None and bn.running_var is not None   # darknet's BN tracks its statistics
        return [bn.bias, bn.weight, bn.running_mean, bn.running_var, block.conv.weight]
    assert block.conv.bias is not None   # a conv without batch norm has a bias in darknet
    return [block.conv.bias, block.conv.weight]


def read_header(data: bytes, path: str) -> tuple[tuple[int, int, int, int], int]:
    """((major, minor, revision, seen), header length in bytes).

    Raises:
        DataError: ``data`` is shorter than its header (16 bytes, 20 with a 64-bit ``seen``).
    """
    if len(data) < 12:
        raise DataError(path, f"darknet weights file too short for a header ({len(data)} bytes)")
    major, minor, revision = (int(v) for v in np.frombuffer(data, dtype="<i4", count=3))
    wide = seen_is_64bit(major, minor)
    size = 20 if wide else 16
    if len(data) < size:  # numpy would raise a bare ValueError naming no file
        raise DataError(path, f"darknet weights file too short for a version {major}.{minor} header "
                              f"({len(data)} bytes, needs {size})")
    seen = np.frombuffer(data, dtype="<i8" if wide else "<i4", count=1, offset=12)[0]
    return (major, minor, revision, int(seen)), size


def read_weights_file(path: Path) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """((major, minor, revision, seen), the float32 values after the header) of a .weights file.

    Shared by both backends (this module and tf_weights.py) so they read a file identically.

    Raises:
        DataError: The file is missing, unreadable, shorter than its header, or its body is not
            a whole number of float32.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(str(path), "darknet weights file not found") from None
    except OSError as exc:
        raise DataError(str(path), f"darknet weights file unreadable: {exc}") from None
    header, offset = read_header(data, str(path))
    if (len(data) - offset) % 4:
        raise DataError(str(path), f"body of {len(data) - offset} bytes is not a whole number of float32")
    return header, np.frombuffer(data, dtype="<f4", offset=offset)


def load_darknet_weights(model: DarknetModel, path: str | Path, strict: bool = True) -> WeightsInfo:
    """Copy a .weights file into ``model`` (in place).

    Args:
        model: The model built from the cfg the weights belong to.
        path: The .weights file.
        strict: Require the file to hold exactly the model's conv layers.

    Raises:
        DataError: The file is missing, truncated mid-layer, too short or too long (strict).
    """
    def assign(block: ConvBlock, chunks: list[np.ndarray]) -> None:
        for tensor, chunk in zip(_conv_tensors(block), chunks):
            tensor.copy_(torch.from_numpy(chunk.copy()).view_as(tensor))

    with torch.no_grad():
        return fill_conv_blocks(path, model.conv_blocks(), lambda b: [t.numel() for t in _conv_tensors(b)],
                                assign, strict)


def fill_conv_blocks(path: str | Path, blocks: list[tuple[Any, Any]], sizes: Callable[[Any], list[int]],
                     assign: Callable[[Any, list[np.ndarray]], None], strict: bool) -> WeightsInfo:
    """Split a .weights file's values over ``blocks`` ((layer, conv block), in file order) and hand
    each block its chunks (``sizes(block)`` values each). Shared by both backends, so a file is
    accepted or refused identically whichever framework loads it.

    Raises:
        DataError: The file is missing, truncated mid-layer, too short or too long (strict).
    """
    path = Path(path)
    (major, minor, revision, seen), values = read_weights_file(path)
    position, loaded = 0, 0
    for layer, block in blocks:
        counts = sizes(block)
        need = sum(counts)
        if position == len(values) and not strict:
            break
        if position + need > len(values):
            raise DataError(str(path), f"ends inside layer {layer.index} ({layer.where()}): needs {need} "
                                       f"values, {len(values) - position} left; wrong cfg or classes?")
        chunks = []
        for count in counts:
            chunks.append(values[position:position + count])
            position += count
        assign(block, chunks)
        loaded += 1
    if strict and (loaded < len(blocks) or position != len(values)):
        raise DataError(str(path), f"holds {len(values)} values; the model's {len(blocks)} conv layers take "
                                   f"{position} (wrong cfg or number of classes?)")
    return WeightsInfo(major, minor, revision, seen, loaded, len(blocks))


def weights_file_size(model: DarknetModel, version: tuple[int, int, int] = WRITE_VERSION) -> int:
    """Bytes of the .weights file of ``model`` (header + float32 values)."""
    header = 20 if seen_is_64bit(*version[:2]) else 16
    return header + 4 * sum(t.numel() for _, block in model.conv_blocks() for t in _conv_tensors(block))


def write_weights_file(path: str | Path, version: tuple[int, int, int], seen: int,
                       arrays: Iterable[np.ndarray]) -> Path:
    """Write the header (``seen`` as int64 from version 0.2 on) and ``arrays`` as little-endian
    float32, in the order given. Shared by both backends so they write a file identically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seen_dtype = "<i8" if seen_is_64bit(*version[:2]) else "<i4"
    with open(path, "wb") as f:
        f.write(np.array(version, dtype="<i4").tobytes())
        f.write(np.array([seen], dtype=seen_dtype).tobytes())
        for array in arrays:
            f.write(np.asarray(array, dtype="<f4").tobytes())
    return path


def save_darknet_weights(model: DarknetModel, path: str | Path, seen: int = 0,
                         version: tuple[int, int, int] = WRITE_VERSION) -> Path:
    """Write ``model``'s conv layers as a .weights file darknet can load."""
    arrays = (tensor.detach().cpu().to(torch.float32).numpy()
              for _, block in model.conv_blocks() for tensor in _conv_tensors(block))
    return write_weights_file(path, version, seen, arrays)
