"""Aspect-ratio grouping: batches of images with similar shape, so padding to the batch's
largest image wastes little (the torchvision detection references' --aspect-ratio-group-factor).

The references' GroupedBatchSampler lives in their scripts, not in the torchvision package, so
this is a small re-implementation of the same idea over the seeded epoch order of batch_order.py.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


def aspect_ratio_groups(ratios: Sequence[float], factor: int) -> list[int]:
    """Bin width/height ratios into 2*factor+2 groups on a log scale around 1 (as the references)."""
    bins = 2 ** np.linspace(-1, 1, 2 * factor + 1)
    return np.digitize(np.asarray(ratios, dtype=float), bins).tolist()


class GroupedBatches(Sampler):
    """Batches whose indices all share a group; the sampler's order decides which fill first.

    Leftovers that never fill a batch are dropped (the loop uses drop_last everywhere).
    """

    def __init__(self, sampler: Sequence[int], groups: Sequence[int], batch_size: int):
        self.sampler, self.groups, self.batch_size = sampler, groups, batch_size

    def __iter__(self) -> Iterator[list[int]]:
        buckets: dict[int, list[int]] = defaultdict(list)
        for index in self.sampler:
            bucket = buckets[self.groups[index]]
            bucket.append(index)
            if len(bucket) == self.batch_size:
                yield list(bucket)
                bucket.clear()

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size
