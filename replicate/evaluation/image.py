"""L1, PSNR and SSIM for image-to-image models (pix2pix and kin).

Generators such as pix2pix's U-Net end in ``tanh``, so predictions and targets arrive in
[-1, 1]. L1 is reported on that scale, the one the pix2pix L1 loss is written on, so it is
directly comparable with the training curve. PSNR and SSIM are computed on [0, 1] images with
``data_range=1.0``, the usual convention for reporting them.
"""

from __future__ import annotations

import torch
from torchmetrics import MeanAbsoluteError
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

PSNR_CAP_DB = 100.0
"""Per-image PSNR ceiling. A pixel-identical pair has infinite PSNR; capping keeps the mean
finite and storable (100 dB is an MSE of 1e-10, far beyond any real reconstruction)."""


class ImageToImageEvaluator:
    """Accumulates (prediction, target) image batches; computes L1, PSNR and SSIM.

    PSNR is the mean over images of each image's PSNR (not the PSNR of the pooled MSE), so one
    bad image cannot hide among good ones, and each image's PSNR is capped at
    :data:`PSNR_CAP_DB`. SSIM is the mean over images (Gaussian window 11, sigma 1.5).
    """

    def __init__(self) -> None:
        """Creates the metrics on the CPU; inputs are moved there on update."""
        self._l1 = MeanAbsoluteError()
        # reduction="none" with per-image dims keeps one PSNR per image, so it can be capped.
        self._psnr = PeakSignalNoiseRatio(data_range=1.0, reduction="none", dim=(1, 2, 3))
        self._ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        self._count = 0

    def reset(self) -> None:
        """Forgets every batch passed to :meth:`update`."""
        for metric in (self._l1, self._psnr, self._ssim):
            metric.reset()
        self._count = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Adds a batch.

        Args:
            pred: Generated images, Tensor[B, C, H, W] in [-1, 1].
            target: Ground-truth images, same shape and range.

        Raises:
            ValueError: The shapes differ or are not 4-D.
        """
        if pred.shape != target.shape or pred.dim() != 4:
            raise ValueError(
                f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same "
                "[B, C, H, W] shape"
            )
        pred = pred.detach().float().cpu().contiguous()  # torchmetrics views its inputs
        target = target.detach().float().cpu().contiguous()
        self._l1.update(pred, target)
        # Clamp: a generator without a final tanh may overshoot, and SSIM/PSNR assume the range.
        pred01 = ((pred + 1) / 2).clamp(0, 1)
        target01 = ((target + 1) / 2).clamp(0, 1)
        self._psnr.update(pred01, target01)
        self._ssim.update(pred01, target01)
        self._count += pred.shape[0]

    def compute(self) -> dict[str, float]:
        """Returns ``{"L1", "PSNR", "SSIM"}`` over everything added since the last reset.

        Raises:
            RuntimeError: Nothing was added.
        """
        if self._count == 0:
            raise RuntimeError("ImageToImageEvaluator.compute() called before any update()")
        psnr = self._psnr.compute().clamp(max=PSNR_CAP_DB).mean()
        return {
            "L1": float(self._l1.compute()),
            "PSNR": float(psnr),
            "SSIM": float(self._ssim.compute()),  # type: ignore[arg-type]  # one tensor: no contrast map asked
        }
