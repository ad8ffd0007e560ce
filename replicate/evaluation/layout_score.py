"""The layout score: does a generated photo keep the layout of the label map it was made from?

pix2pix's paper judges conditioning with the FCN-score (Isola et al. 2017, section 4.1): a
segmenter trained on real photos labels the generated ones, and the labels are scored against
the input label map (``fcn_score.py`` restates it for Cityscapes). L1, PSNR and SSIM cannot see
conditioning: a generator whose discriminator ignores the input still matches pixels on average.

On the synthetic shapes pairs the segmenter needs no training: the renderer paints each class
in a fixed material colour (``replicate.data.shapes.PHOTO_COLOURS``) plus texture, so the nearest
material colour is the exact segmenter, and the nearest label colour reads the label map. The
scores are the FCN-score's three (per-pixel accuracy, mean per-class accuracy, mean class IoU,
``fcn_scores``), counted over every pixel of every image in one confusion matrix, as there.
"""

from __future__ import annotations

import numpy as np
import torch

from replicate.evaluation.fcn_score import fcn_scores

PREFIX = "layout"   # metrics layout_per_pixel_acc, layout_per_class_acc, layout_class_iou


def nearest_colour(image: torch.Tensor, colours: np.ndarray) -> np.ndarray:
    """Per pixel, the index of the nearest colour (Euclidean in RGB, grey levels 0-255).

    Args:
        image: [3, H, W] in [-1, 1] (a generator's tanh range), or [B, 3, H, W].
        colours: [K, 3] grey levels.
    Returns:
        int64 [H, W] (or [B, H, W]) indices into ``colours``.
    """
    pixels = (image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5
    pixels = pixels.movedim(-3, -1)[..., None, :]                        # [..., H, W, 1, 3]
    palette = torch.as_tensor(np.asarray(colours, dtype=np.float32))     # [K, 3]
    return ((pixels - palette) ** 2).sum(-1).argmin(-1).numpy().astype(np.int64)


class LayoutScoreEvaluator:
    """Accumulates (label map, generated photo) pairs in one confusion matrix of classes.

    Args:
        label_colours: [K, 3] the label map's colour per class (background first).
        photo_colours: [K, 3] the photo's material colour per class, in the same order.
    """

    def __init__(self, label_colours: np.ndarray, photo_colours: np.ndarray):
        label_colours, photo_colours = np.asarray(label_colours), np.asarray(photo_colours)
        if label_colours.shape != photo_colours.shape or label_colours.ndim != 2 or label_colours.shape[1] != 3:
            raise ValueError(f"label colours {label_colours.shape} and photo colours {photo_colours.shape} "
                             "must both be [classes, 3]")
        self.label_colours, self.photo_colours = label_colours, photo_colours
        self.classes = len(label_colours)
        self.hist = np.zeros((self.classes, self.classes), np.int64)

    def update(self, labels: torch.Tensor, generated: torch.Tensor) -> None:
        """Adds a batch: label maps and generated photos, [B, 3, H, W] in [-1, 1], the same shape."""
        if labels.shape != generated.shape or labels.dim() != 4:
            raise ValueError(f"labels {tuple(labels.shape)} and generated {tuple(generated.shape)} must have "
                             "the same [B, 3, H, W] shape")
        truth = nearest_colour(labels, self.label_colours).ravel()
        guess = nearest_colour(generated, self.photo_colours).ravel()
        self.hist += np.bincount(self.classes * truth + guess,
                                 minlength=self.classes ** 2).reshape(self.classes, self.classes)

    def compute(self) -> dict[str, float]:
        """The three scores; {} before any update."""
        return fcn_scores(self.hist, PREFIX) if self.hist.sum() else {}
