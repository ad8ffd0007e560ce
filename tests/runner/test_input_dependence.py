"""The rule that every declared input moves its network's output (replicate/runner/input_dependence.py)."""

from __future__ import annotations

import torch

from replicate.runner.input_dependence import changed, ignored_inputs


def test_a_network_that_reads_both_inputs_passes_and_one_that_drops_one_is_named():
    conv = torch.nn.Conv2d(6, 1, 3)
    a, b = torch.randn(1, 3, 8, 8), torch.randn(1, 3, 8, 8)
    assert ignored_inputs("the net", lambda a, b: conv(torch.cat([a, b], 1)), {"a": a, "b": b}) == []
    dropped = ignored_inputs("the net", lambda a, b: conv(torch.cat([torch.zeros_like(a), b], 1)), {"a": a, "b": b})
    assert dropped == ["the net ignores its a: its output is bit-identical when the a changes"]


def test_a_mirror_symmetric_input_is_still_changed():
    symmetric = torch.ones(1, 3, 4, 4)
    assert not torch.equal(changed(symmetric), symmetric)
    image = torch.arange(8.0).reshape(1, 1, 2, 4)
    assert torch.equal(changed(image), image.flip(-1))
