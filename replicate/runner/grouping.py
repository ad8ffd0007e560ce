"""Aspect-ratio grouping: batches of images with similar shape, so padding to the batch's
largest image wastes little (the torchvision detection references' --aspect-ratio-group-factor).

The references' GroupedBatchSampler lives in their scripts (references/detection/
group_by_aspect_ratio.py), not in the torchvision package, so this re-implements it over the
seeded epoch order of batch_order.py, including how it ends an epoch: the leftovers of each group
are completed with that group's earlier samples, so every process yields len(sampler) //
batch_size batches (DDP needs the same count on every process).
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


def aspect_ratio_groups(ratios: Sequence[float], factor: int) -> list[int]:
    """Bin width/height ratios as the references' create_aspect_ratio_groups: 2*factor+2 groups
    on a log scale around 1, or for factor 0 two groups split at 1 (bisect_right = digitize)."""
    bins = 2 ** np.linspace(-1, 1, 2 * factor + 1) if factor > 0 else np.array([1.0])
    return np.digitize(np.asarray(ratios, dtype=float), bins).tolist()


class GroupedBatches(Sampler):
    """Batches whose indices all share a group; the sampler's order decides which fill first.

    After the sampler runs out, the partly filled groups, fullest first (ties in the order the
    group last started a buffer, as the reference's dict), are completed with the group's first
    samples of the epoch until there are ``len(sampler) // batch_size`` batches.
    """

    def __init__(self, sampler: Sequence[int], groups: Sequence[int], batch_size: int):
        self.sampler, self.groups, self.batch_size = sampler, groups, batch_size

    def __iter__(self) -> Iterator[list[int]]:
        buffers: dict[int, list[int]] = {}
        seen: dict[int, list[int]] = {}
        made = 0
        for index in self.sampler:
            group = self.groups[index]
            buffers.setdefault(group, []).append(index)
            seen.setdefault(group, []).append(index)
            if len(buffers[group]) == self.batch_size:
                yield buffers.pop(group)
                made += 1
                buffers[group] = []   # re-entered last: the reference's defaultdict does the same
        missing = len(self) - made
        fullest = sorted(buffers.items(), key=lambda item: len(item[1]), reverse=True)
        for group, buffer in fullest[:max(missing, 0)]:
            need = self.batch_size - len(buffer)
            samples = seen[group] * math.ceil(need / len(seen[group]))
            yield buffer + samples[:need]

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size
