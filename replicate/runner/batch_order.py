"""Which training batches a job sees: a pure function of (seed, epoch), so a resumed job sees
exactly the batches of the uninterrupted one.

An epoch is a seeded permutation of the training set cut into full batches (drop_last), or, with
aspect-ratio grouping, the batches the torchvision detection references form: each of their
``sampler_processes`` data-parallel processes takes its DistributedSampler share of the
permutation and groups it alone (GroupedBatchSampler over DistributedSampler, train.py), and a
global batch is the union of every process's batch of that step. Without grouping the union of
the processes' drop_last batches is the same cut of the permutation (up to DistributedSampler's
padding), so that path needs no processes. The position of step N is found by counting each
epoch's real batches, not by dividing.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, cast

import torch
from torch.utils.data import Dataset, DistributedSampler

from replicate.errors import DataError
from replicate.runner.grouping import GroupedBatches, aspect_ratio_groups

SEED_STRIDE = 1_000_003   # epoch e of seed s draws from s * SEED_STRIDE + e: neighbouring seeds' epochs apart


def epoch_permutation(size: int, seed: int, epoch: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed * SEED_STRIDE + epoch)
    return torch.randperm(size, generator=generator).tolist()


def process_share(size: int, seed: int, epoch: int, processes: int, rank: int) -> list[int]:
    """Process ``rank``'s share of the epoch: torch's DistributedSampler (shuffled, padded by
    repeating the start) seeded so that its permutation is :func:`epoch_permutation`'s."""
    # it reads only the dataset's length
    sampler: DistributedSampler[int] = DistributedSampler(cast("Dataset[int]", range(size)), num_replicas=processes,
                                                          rank=rank, shuffle=True, seed=seed * SEED_STRIDE)
    sampler.set_epoch(epoch)
    return list(sampler)


class BatchOrder:
    """The batches of every epoch of one job.

    Args:
        size: Training samples.
        seed: The job's seed.
        batch_size: Samples per batch.
        groups: Aspect-ratio group per sample, or None for no grouping.
        processes: The reference's data-parallel processes that group their shares apart
            (grouping only); ``batch_size`` splits evenly over them.
    """

    def __init__(self, size: int, seed: int, batch_size: int, groups: Optional[Sequence[int]] = None,
                 processes: int = 1):
        self.size, self.seed, self.batch_size, self.groups = size, seed, batch_size, groups
        self.processes = processes
        self._cached: tuple[int, list[list[int]]] | None = None

    def epoch(self, epoch: int) -> list[list[int]]:
        if self._cached is None or self._cached[0] != epoch:
            order = epoch_permutation(self.size, self.seed, epoch)
            if self.groups is None:
                batches = [order[i:i + self.batch_size] for i in range(0, self.size - self.batch_size + 1,
                                                                        self.batch_size)]
            else:
                batches = self.grouped(epoch)
            if not batches:
                raise DataError("training set", f"{self.size} samples give no full batch of {self.batch_size}"
                                                f" over {self.processes} sampling processes")
            self._cached = (epoch, batches)
        return self._cached[1]

    def grouped(self, epoch: int) -> list[list[int]]:
        """Every process's grouped batches, step by step, as global batches. Process p's k-th
        batch sits at positions p, p + P, p + 2P ... of global batch k: a worker that takes
        ``batch[rank::world]`` (the loop) gets whole batches of the processes p = rank mod world,
        exactly process ``rank``'s when it runs as many workers as the reference's processes."""
        assert self.groups is not None
        per = self.batch_size // self.processes
        shards = [list(GroupedBatches(process_share(self.size, self.seed, epoch, self.processes, p),
                                      self.groups, per)) for p in range(self.processes)]
        return [[shard[k][j] for j in range(per) for shard in shards] for k in range(len(shards[0]))]

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, batches into it) after ``step`` training steps."""
        epoch = 0
        while step >= len(self.epoch(epoch)):
            step -= len(self.epoch(epoch))
            epoch += 1
        return epoch, step


def job_batch_order(task: Any, train_set: Any, recipe: Any, seed: int) -> BatchOrder:
    """A job's BatchOrder: its recipe's batch size and, where the recipe groups by aspect ratio
    (the torchvision references), its task's aspect-ratio groups, formed per sampling process."""
    factor = recipe.aspect_ratio_group_factor
    ratios = task.aspect_ratios(train_set) if factor is not None else None
    groups = aspect_ratio_groups(ratios, factor) if ratios is not None else None
    processes = int(getattr(recipe, "sampler_processes", None) or 1)   # validate.py: batch_size splits over them
    return BatchOrder(len(train_set), seed, recipe.batch_size, groups, processes)
