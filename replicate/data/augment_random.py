"""The one random stream of a dataset's augmentation draws, and its place in the checkpoint.

A resumed job must draw the augmentations the uninterrupted job would have drawn, or the resume
changes the result (a BELOW can turn into a PASS). CPU jobs load data in the loop's own process
(no DataLoader workers), so there the stream is one generator seeded once, and its state travels
in the checkpoint next to torch's, numpy's and Python's.

A DataLoader worker holds a copy made when each epoch's iterator starts: copies of one state
would give every worker, in every epoch, the same draws. A worker therefore reseeds from
(seed, epoch, worker id): draws differ across workers and epochs, and repeat for the same ones.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch.utils.data import get_worker_info


class AugmentationRandom:
    """A seeded ``torch.Generator`` for augmentation draws (see the module docstring)."""

    def __init__(self, seed: int):
        self.seed, self.epoch = int(seed), 0
        self._worker: Optional[int] = None
        self.generator = torch.Generator().manual_seed(self.seed)

    def get(self) -> torch.Generator:
        info = get_worker_info()
        if info is not None and self._worker != info.id:
            self._worker = info.id
            self.generator.manual_seed((self.seed * 1_000_003 + self.epoch) * 1009 + info.id + 1)
        return self.generator

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next DataLoader iterator serves (only workers' seeds depend on it)."""
        self.epoch = int(epoch)

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * torch.rand((), generator=self.get()).item()

    def index(self, n: int) -> int:
        return int(torch.randint(n, (), generator=self.get()).item())

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def load_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


def augmentation_random(dataset: Any) -> Optional[AugmentationRandom]:
    """The dataset's augmentation stream, when it declares one (``augmentation_random``)."""
    found = getattr(dataset, "augmentation_random", None)
    return found if isinstance(found, AugmentationRandom) else None
