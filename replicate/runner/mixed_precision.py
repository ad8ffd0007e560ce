"""fp16 autocast and gradient scaling for a torch job whose precision is amp (replicate/precision.py
decides when), as PyTorch's AMP recipe does it, in one object the loop and a GAN's own step share.

Disabled (fp32, every CPU job), each method is the plain fp32 operation: ``autocast()`` enters
nothing, ``backward(loss)`` is ``loss.backward()``, ``step(opt)`` is ``opt.step()``, ``update()``
does nothing; a job computes exactly what it computed before precision was a setting.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any, Optional

import torch


class MixedPrecision:
    """The forward passes in fp16 autocast on ``autocast_device`` (None: none), every loss scaled
    before its backward pass, every optimizer stepped through the scaler (unscaled first; skipped
    when its gradients hold an inf or NaN), the scale updated once per iteration.

    A task that steps its own optimizers (a GAN: several models, losses and optimizers) calls
    ``autocast``, ``backward`` and ``step`` itself, in its reference's order; the loop calls
    ``update`` once after the task's step, as the AMP recipe "multiple models, losses and
    optimizers" (pytorch.org/docs/stable/notes/amp_examples.html) does.
    """

    def __init__(self, autocast_device: Optional[str], scaler: torch.amp.GradScaler):
        self.autocast_device = autocast_device
        self.scaler = scaler

    @classmethod
    def for_device(cls, fp16: bool, device_type: str) -> "MixedPrecision":
        """The job's: autocast and an enabled scaler when ``fp16`` (amp on CUDA), else fp32."""
        return cls(device_type if fp16 else None, torch.amp.GradScaler(device_type, enabled=fp16))

    def autocast(self) -> AbstractContextManager:
        if self.autocast_device is None:
            return nullcontext()
        return torch.autocast(self.autocast_device, dtype=torch.float16)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def unscale(self, optimizer: Any) -> None:
        """Gradients back to their true size before they are clipped."""
        self.scaler.unscale_(optimizer)

    def step(self, optimizer: Any) -> None:
        self.scaler.step(optimizer)

    def update(self) -> None:
        self.scaler.update()
