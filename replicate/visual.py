"""Visual check: a PNG grid of (augmented) training samples with their labels drawn, each box
labelled with its class name (the annotation file's categories) where the dataset has them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from torchvision.utils import make_grid, save_image

# attributes a dataset wrapper keeps the wrapped dataset under (augmentation sets, subsets)
WRAPPED = ("base", "dataset")


def category_names(dataset: Any) -> Optional[dict[int, str]]:
    """COCO category id -> name of ``dataset`` (or of the dataset it wraps); None without one."""
    for _ in range(4):   # a wrapper of a wrapper at most; never a cycle
        coco = getattr(dataset, "coco", None)
        if coco is not None:
            return {int(cid): str(cat.get("name", cid)) for cid, cat in coco.cats.items()}
        dataset = next((getattr(dataset, a) for a in WRAPPED if getattr(dataset, a, None) is not None), None)
        if dataset is None:
            return None
    return None


def write_sample_grid(task: Any, dataset: Any, path: Path, count: int = 16) -> Path:
    """Draw ``count`` samples through the task's ``draw_sample`` and save them as one PNG."""
    names = category_names(dataset)
    tiles = [task.draw_sample(dataset[i], names) for i in range(min(count, len(dataset)))]
    size = max(t.shape[-1] for t in tiles)
    tiles = [torch.nn.functional.interpolate(t[None].float(), size=(size, size))[0] for t in tiles]
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(tiles, nrow=4, padding=2) / 255.0, path)
    return path
