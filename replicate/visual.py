"""Visual check: a PNG grid of (augmented) training samples with their labels drawn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torchvision.utils import make_grid, save_image


def write_sample_grid(task: Any, dataset: Any, path: Path, count: int = 16) -> Path:
    """Draw ``count`` samples through the task's ``draw_sample`` and save them as one PNG."""
    tiles = [task.draw_sample(dataset[i]) for i in range(min(count, len(dataset)))]
    size = max(t.shape[-1] for t in tiles)
    tiles = [torch.nn.functional.interpolate(t[None].float(), size=(size, size))[0] for t in tiles]
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(tiles, nrow=4, padding=2) / 255.0, path)
    return path
