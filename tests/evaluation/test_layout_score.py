"""The layout score (replicate/evaluation/layout_score.py): the synthetic pairs' exact FCN-score.

Restated here without the product's code: a pixel's class is the colour it is nearest to, and
the three scores are counted from one confusion matrix as the authors' ``get_scores`` does.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from replicate.data.paired_dataset import PairedImages
from replicate.data.shapes import LABEL_COLOURS, PHOTO_COLOURS, class_colours, ensure_shapes
from replicate.errors import ConfigError
from replicate.evaluation.layout_score import LayoutScoreEvaluator, nearest_colour

CLASSES = ["circle", "square", "triangle"]


def in_tanh_range(grey: np.ndarray) -> torch.Tensor:
    """[H, W, 3] grey levels -> [1, 3, H, W] in [-1, 1]."""
    return torch.from_numpy(grey.astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1


def painted(codes: np.ndarray, colours: dict[str, tuple[int, int, int]]) -> torch.Tensor:
    names = ["background", *CLASSES]
    return in_tanh_range(np.array([colours[names[c]] for c in codes.ravel()]).reshape(*codes.shape, 3))


def restated_scores(truth: np.ndarray, guess: np.ndarray, classes: int) -> dict[str, float]:
    """Per-pixel accuracy, mean per-class accuracy and mean IoU over all ``classes`` classes."""
    hist = np.zeros((classes, classes))
    for t, g in zip(truth.ravel(), guess.ravel()):
        hist[t, g] += 1
    diag = np.diag(hist)
    return {"layout_per_pixel_acc": diag.sum() / hist.sum(),
            "layout_per_class_acc": float(np.mean(diag / (hist.sum(1) + 1e-12))),
            "layout_class_iou": float(np.mean(diag / (hist.sum(1) + hist.sum(0) - diag + 1e-12)))}


def test_colours_follow_the_renderers_tables():
    labels, photos = class_colours(CLASSES)
    assert labels.tolist() == [list(LABEL_COLOURS[n]) for n in ["background", *CLASSES]]
    assert photos.tolist() == [list(PHOTO_COLOURS[n]) for n in ["background", *CLASSES]]
    with pytest.raises(ConfigError, match="hexagon"):
        class_colours(["circle", "hexagon"])


def test_scores_agree_with_a_restated_count():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, size=(2, 16, 16))
    guess = np.where(rng.random(truth.shape) < 0.7, truth, rng.integers(0, 4, size=truth.shape))
    evaluator = LayoutScoreEvaluator(*class_colours(CLASSES))
    for t, g in zip(truth, guess):
        evaluator.update(painted(t, LABEL_COLOURS), painted(g, PHOTO_COLOURS))
    assert evaluator.compute() == pytest.approx(restated_scores(truth, guess, 4), abs=1e-12)


def test_texture_does_not_move_a_pixel_off_its_class():
    """The renderer's texture (std 12 grey levels, _PHOTO_NOISE) stays nearest its material: the
    segmenter is exact on what the renderer paints (the closest materials are 127 levels apart)."""
    codes = np.random.default_rng(1).integers(0, 4, size=(32, 32))
    texture = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 12 / 127.5
    photo = painted(codes, PHOTO_COLOURS) + texture
    assert (nearest_colour(photo[0], class_colours(CLASSES)[1]) == codes).all()


def test_real_pairs_score_near_one_and_mismatched_pairs_do_not(tmp_path):
    """On the generated shapes pairs (the smoke tier's data), each real photo keeps its label
    map's layout; the photo of another pair does not: the score sees conditioning."""
    cfg = {"root": str(tmp_path / "shapes"), "image_size": 64, "num_train": 4, "num_val": 8, "max_objects": 3,
           "classes": CLASSES, "seed": 1234}
    pairs = PairedImages(ensure_shapes(cfg), "pairs/val")
    labels, photos = (torch.stack(t) for t in zip(*(pairs[i] for i in range(len(pairs)))))
    matched, mismatched = (LayoutScoreEvaluator(*class_colours(CLASSES)) for _ in range(2))
    matched.update(labels, photos)
    mismatched.update(labels, photos.roll(1, 0))
    assert matched.compute()["layout_per_pixel_acc"] > 0.995
    assert matched.compute()["layout_class_iou"] > 0.98
    assert mismatched.compute()["layout_class_iou"] < 0.7


def test_bad_inputs_are_refused():
    labels, photos = class_colours(CLASSES)
    with pytest.raises(ValueError, match="classes, 3"):
        LayoutScoreEvaluator(labels, photos[:2])
    evaluator = LayoutScoreEvaluator(labels, photos)
    assert evaluator.compute() == {}
    with pytest.raises(ValueError, match="same"):
        evaluator.update(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 4))
