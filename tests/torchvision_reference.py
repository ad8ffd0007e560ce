"""pytorch/vision's detection reference's training data pipeline, restated for tests from its
scripts (references/detection at commit aaca9bdc237e2d4dd3d919e9ef3151a1133c6d40 for
coco_utils.py, d2aeec2a39981969440d24550feb86c75d894f82 for group_by_aspect_ratio.py,
3ceb056d4c4a2d79ccdc65cbd2342b0e89a7ae47 for train.py) and torch's DistributedSampler, in plain
Python over the annotation JSON: which training images it keeps, their aspect-ratio groups and
the batches each data-parallel process draws. Nothing here is imported by the product.
"""

from __future__ import annotations

import bisect
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch


def kept_train_image_ids(annotation_file: Path) -> list[int]:
    """coco_utils.py get_coco(image_set="train") -> _coco_remove_images_without_annotations (no
    cat_list): over torchvision's CocoDetection ids (sorted image ids), an image stays when it has
    an annotation (getAnnIds(iscrowd=None): crowd ones count) and not every box has its width or
    height <= 1 (_has_only_empty_bbox). The keypoint clause needs a "keypoints" field, which
    instances files lack."""
    data = json.loads(Path(annotation_file).read_text())
    anns: dict[int, list[dict]] = defaultdict(list)
    for ann in data["annotations"]:
        anns[ann["image_id"]].append(ann)
    kept = []
    for image_id in sorted(image["id"] for image in data["images"]):
        boxes = [ann["bbox"] for ann in anns[image_id]]
        if not boxes:
            continue
        if all(box[2] <= 1 or box[3] <= 1 for box in boxes):
            continue
        kept.append(image_id)
    return kept


def aspect_ratio_groups(annotation_file: Path, image_ids: list[int], k: int) -> list[int]:
    """group_by_aspect_ratio.py create_aspect_ratio_groups over the coco fast path (width /
    height from the file's image records), quantised with bisect_right into the sorted bins."""
    images = {image["id"]: image for image in json.loads(Path(annotation_file).read_text())["images"]}
    ratios = [images[i]["width"] / images[i]["height"] for i in image_ids]
    bins = sorted((2 ** np.linspace(-1, 1, 2 * k + 1)).tolist() if k > 0 else [1.0])
    return [bisect.bisect_right(bins, r) for r in ratios]


def distributed_sampler(size: int, replicas: int, rank: int, seed: int, epoch: int) -> list[int]:
    """torch.utils.data.DistributedSampler (shuffle, drop_last False) after set_epoch(epoch): a
    randperm from a generator seeded seed + epoch, padded to a multiple of ``replicas`` with its
    own start, then every ``replicas``-th index from ``rank``."""
    generator = torch.Generator()
    generator.manual_seed(seed + epoch)
    order = torch.randperm(size, generator=generator).tolist()
    per_replica = math.ceil(size / replicas)
    total = per_replica * replicas
    while len(order) < total:
        order += order[:total - len(order)]
    return order[rank:total:replicas]


def grouped_batch_sampler(sampler: list[int], groups: list[int], batch_size: int) -> list[list[int]]:
    """group_by_aspect_ratio.py GroupedBatchSampler.__iter__: a batch leaves as soon as
    ``batch_size`` indices of one group are buffered; at the end the buffers, longest first (in
    the defaultdict's key order: a group whose batch just left is looked up again by the
    assert, so it re-enters last), are topped up with repeats of the group's samples so far until
    len(sampler) // batch_size batches came out."""
    buffers: defaultdict[int, list[int]] = defaultdict(list)
    history: defaultdict[int, list[int]] = defaultdict(list)
    out: list[list[int]] = []
    for index in sampler:
        group = groups[index]
        buffers[group].append(index)
        history[group].append(index)
        if len(buffers[group]) == batch_size:
            out.append(buffers[group])
            del buffers[group]
        assert len(buffers[group]) < batch_size          # the reference's line, with its side effect
    wanted = len(sampler) // batch_size
    for group, buffer in sorted(buffers.items(), key=lambda item: len(item[1]), reverse=True):
        if len(out) == wanted:
            break
        missing = batch_size - len(buffer)
        repeated = history[group] * math.ceil(missing / len(history[group]))
        out.append(buffer + repeated[:missing])
    return out


def process_batches(size: int, groups: list[int], processes: int, per_process: int, seed: int,
                    epoch: int) -> list[list[list[int]]]:
    """train.py with --aspect-ratio-group-factor and distributed: each process's batches,
    GroupedBatchSampler(DistributedSampler(dataset), group_ids, args.batch_size)."""
    return [grouped_batch_sampler(distributed_sampler(size, processes, rank, seed, epoch), groups, per_process)
            for rank in range(processes)]
