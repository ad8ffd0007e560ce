"""Image-to-image metrics: L1 on the tanh scale, PSNR and SSIM on [0, 1]."""

from __future__ import annotations

import math

import pytest
import torch

from replicate.evaluation.image import PSNR_CAP_DB, ImageToImageEvaluator


@pytest.fixture
def images() -> torch.Tensor:
    # Smooth images (like photos), in the generator's [-1, 1] range.
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(4, 3, 8, 8, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(64, 64), mode="bilinear") * 2 - 1


def _evaluate(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    evaluator = ImageToImageEvaluator()
    evaluator.update(pred, target)
    return evaluator.compute()


def test_identical_images(images):
    metrics = _evaluate(images, images)
    assert set(metrics) == {"L1", "PSNR", "SSIM"}
    assert metrics["L1"] == 0.0
    assert metrics["SSIM"] == pytest.approx(1.0, abs=1e-5)
    assert metrics["PSNR"] == PSNR_CAP_DB  # infinite per image, capped to stay finite


def test_noise_lowers_ssim_and_psnr_and_raises_l1(images):
    generator = torch.Generator().manual_seed(1)
    slightly = (images + 0.05 * torch.randn(images.shape, generator=generator)).clamp(-1, 1)
    heavily = (images + 0.5 * torch.randn(images.shape, generator=generator)).clamp(-1, 1)
    light, heavy = _evaluate(slightly, images), _evaluate(heavily, images)
    assert 0.0 < light["L1"] < heavy["L1"]
    assert heavy["SSIM"] < light["SSIM"] < 1.0
    assert heavy["PSNR"] < light["PSNR"] < PSNR_CAP_DB


def test_scales(images):
    # A constant offset of 0.2 on [-1, 1] is 0.1 on [0, 1]: L1 0.2, PSNR = 10 log10(1 / 0.01) = 20.
    shifted = images.clamp(-0.8, 0.8) + 0.2
    metrics = _evaluate(shifted, images.clamp(-0.8, 0.8))
    assert metrics["L1"] == pytest.approx(0.2, abs=1e-5)
    assert metrics["PSNR"] == pytest.approx(20.0, abs=1e-3)


def test_accumulates_over_batches_and_resets(images):
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(2))
    noisy = (images + 0.1 * noise).clamp(-1, 1)
    whole = _evaluate(noisy, images)
    evaluator = ImageToImageEvaluator()
    evaluator.update(noisy[:1], images[:1])
    evaluator.update(noisy[1:], images[1:])
    for key, value in evaluator.compute().items():
        assert value == pytest.approx(whole[key], rel=1e-4), key
    evaluator.reset()
    with pytest.raises(RuntimeError, match="before any update"):
        evaluator.compute()
    evaluator.update(images, images)
    assert evaluator.compute()["L1"] == 0.0


def test_psnr_is_mean_of_per_image_values(images):
    # One perfect image and one offset image: the mean of per-image PSNRs, not the pooled MSE's.
    target = images[:2].clamp(-0.8, 0.8)
    pred = target.clone()
    pred[1] += 0.2
    psnr = _evaluate(pred, target)["PSNR"]
    assert psnr == pytest.approx((PSNR_CAP_DB + 20.0) / 2, abs=1e-3)
    assert math.isfinite(psnr)


def test_shape_mismatch_names_both_shapes(images):
    evaluator = ImageToImageEvaluator()
    with pytest.raises(ValueError, match=r"\(4, 3, 64, 64\).*\(4, 3, 32, 32\)"):
        evaluator.update(images, images[..., :32, :32])
    with pytest.raises(ValueError, match="same"):
        evaluator.update(images[0], images[0])
