"""Every input a network is declared to read must move its output.

A conditional network that silently stops reading one of its inputs still trains and still
scores: pix2pix's discriminator judging the generated image without the label map it was made
from is an unconditional GAN (the paper's Table 1 shows it pairs outputs with inputs worse), and
L1, PSNR and SSIM barely move. The rule is exact and needs no calibration: change one input
(mirrored left to right), keep the others, and the output must differ in at least one bit.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch


def changed(value: torch.Tensor) -> torch.Tensor:
    """Another input of the same shape and range: ``value`` mirrored along its last axis (an
    image left to right), or shifted by one where mirroring leaves it as it was."""
    other = value.flip(-1)
    return other if not torch.equal(other, value) else value + 1


def ignored_inputs(network: str, forward: Callable[..., Any], inputs: Mapping[str, torch.Tensor]) -> list[str]:
    """One line per input of ``forward`` whose change leaves the output bit-identical.

    Args:
        network: What the lines call the network ("the discriminator").
        forward: Called with ``inputs`` as keyword arguments; returns a tensor.
        inputs: Each input the network is declared to read, by name.
    """
    with torch.no_grad():
        base = forward(**inputs)
        return [f"{network} ignores its {name}: its output is bit-identical when the {name} changes"
                for name, value in inputs.items()
                if torch.equal(forward(**{**inputs, name: changed(value)}), base)]
