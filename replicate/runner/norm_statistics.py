"""Batch norm running statistics: a layer that trains must update them (``replicate check``'s
``statistics`` check, for the torch and the TensorFlow pre-flight alike)."""

from __future__ import annotations

from typing import Any, Sequence

import torch

# The layers that keep running statistics (torch's public classes; instance norm keeps none by default)
BATCH_NORMS = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d, torch.nn.SyncBatchNorm)


def running_statistics(model: Any) -> list[tuple[str, torch.Tensor]]:
    """The running statistics batch norm layers update while they train (frozen batch norm, as in
    torchvision's detection backbones, keeps buffers that never move: it is not listed)."""
    found = []
    for name, module in model.named_modules():
        if isinstance(module, BATCH_NORMS) and module.track_running_stats:
            found += [(f"{name}.running_mean", module.running_mean), (f"{name}.running_var", module.running_var)]
    return [(n, t) for n, t in found if t is not None]


def statistics_moved(names: Sequence[str], unchanged: Sequence[bool]) -> tuple[bool, str]:
    """(ok, detail) of the ``statistics`` check: training steps must update every running
    statistic of the normalisation layers. One that stays put trains in inference mode
    (``model.eval()`` left on, ``training=False`` in a Keras step): it normalises with its
    initial statistics and never learns the data's, and the evaluation then uses those."""
    still = [n for n, same in zip(names, unchanged) if same]
    if not names:
        return True, "no normalisation layer keeps running statistics"
    detail = f"{len(names) - len(still)}/{len(names)} running statistics moved during the overfit steps"
    if still:
        detail += f"; unchanged: {', '.join(still[:4])}: trains in inference mode (model.eval(), training=False?)"
    return not still, detail
