"""Defects of CenterNet's target encoding (models/zoo_models/centernet/detector.py and targets.py)."""

from __future__ import annotations

import math
from typing import Any, Callable

from replicate.defects.patching import wrap
from replicate.defects.registry import register


@register("center_offset_half_cell", ("centernet",), stage="data", type="data pipeline",
          description="centre-offset target measured from the cell's centre; decoding adds it to the corner")
def center_offset_half_cell(task: Any, cfg: Any) -> None:
    """The sub-cell offset target is measured from the centre of the object's cell
    (``ct - (int(ct) + 0.5)``) while decoding adds the predicted offset to the cell's corner, as
    the reference does: every decoded box sits half an output cell up and left of its object."""
    import torch

    def collate(original: Callable[..., Any], items: list) -> Any:
        images, targets, encoded = original(items)
        half = 0.5 * encoded["mask"].unsqueeze(-1)   # only real objects: padding stays 0
        return images, targets, {**encoded, "reg": encoded["reg"] - half.to(torch.float32)}

    wrap(task, "collate", collate)


def exact_root_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """CornerNet's three corner-shift cases solved with the exact quadratic roots
    ``(-b + sqrt(b^2 - 4ac)) / (2a)``: about 3x smaller radii than the reference's formula."""
    a1, b1, c1 = 1.0, height + width, width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 - math.sqrt(b1 ** 2 - 4 * a1 * c1)) / (2 * a1)
    a2, b2, c2 = 4.0, 2 * (height + width), (1 - min_overlap) * width * height
    r2 = (b2 - math.sqrt(b2 ** 2 - 4 * a2 * c2)) / (2 * a2)
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (height + width), (min_overlap - 1) * width * height
    r3 = (-b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / (2 * a3)
    return min(r1, r2, r3)


@register("heatmap_radius_exact_roots", ("centernet",), stage="data", type="data pipeline",
          description="centre gaussians sized by the exact quadratic roots, ~3x narrower than the reference's")
def heatmap_radius_exact_roots(task: Any, cfg: Any) -> None:
    """``gaussian_radius`` was "fixed" to the mathematically exact roots of CornerNet's
    quadratics, as one revision of the CenterNet code has it, while the published models were
    trained with the original formula: the centre gaussians are about three times narrower, so
    the focal loss penalises near-centre cells it should forgive."""
    task.gaussian_radius = exact_root_radius
