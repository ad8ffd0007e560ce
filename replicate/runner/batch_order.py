"""Which training batches a job sees: a pure function of (seed, epoch), so a resumed job sees
exactly the batches of the uninterrupted one.

An epoch is a seeded permutation of the training set cut into full batches (drop_last), or, with
aspect-ratio grouping, the grouped batches of that permutation. Grouping drops leftovers, so an
epoch can hold fewer than ``len // batch_size`` batches: the position of step N is found by
counting each epoch's real batches, not by dividing.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch

from replicate.errors import DataError
from replicate.runner.grouping import GroupedBatches, aspect_ratio_groups


def epoch_permutation(size: int, seed: int, epoch: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(size, generator=generator).tolist()


class BatchOrder:
    """The batches of every epoch of one job.

    Args:
        size: Training samples.
        seed: The job's seed.
        batch_size: Samples per batch.
        groups: Aspect-ratio group per sample, or None for no grouping.
    """

    def __init__(self, size: int, seed: int, batch_size: int, groups: Optional[Sequence[int]] = None):
        self.size, self.seed, self.batch_size, self.groups = size, seed, batch_size, groups
        self._cached: tuple[int, list[list[int]]] | None = None

    def epoch(self, epoch: int) -> list[list[int]]:
        if self._cached is None or self._cached[0] != epoch:
            order = epoch_permutation(self.size, self.seed, epoch)
            if self.groups is None:
                batches = [order[i:i + self.batch_size] for i in range(0, self.size - self.batch_size + 1,
                                                                        self.batch_size)]
            else:
                batches = list(GroupedBatches(order, self.groups, self.batch_size))
            if not batches:
                raise DataError("training set", f"{self.size} samples give no full batch of {self.batch_size}"
                                                " (aspect-ratio grouping drops groups smaller than a batch)")
            self._cached = (epoch, batches)
        return self._cached[1]

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, batches into it) after ``step`` training steps."""
        epoch = 0
        while step >= len(self.epoch(epoch)):
            step -= len(self.epoch(epoch))
            epoch += 1
        return epoch, step


def job_batch_order(task: Any, train_set: Any, recipe: Any, seed: int) -> BatchOrder:
    """A job's BatchOrder: its recipe's batch size and, where the recipe groups by aspect ratio
    (the torchvision references), its task's aspect-ratio groups."""
    factor = recipe.aspect_ratio_group_factor
    ratios = task.aspect_ratios(train_set) if factor is not None else None
    groups = aspect_ratio_groups(ratios, factor) if ratios is not None else None
    return BatchOrder(len(train_set), seed, recipe.batch_size, groups)
