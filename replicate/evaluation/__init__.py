"""Evaluators that turn model predictions into the metrics that claims are checked against.

``coco`` computes the 12 standard COCO detection / instance-segmentation statistics through
faster-coco-eval (numerically equal to pycocotools, several times faster); ``image`` computes
L1, PSNR and SSIM for image-to-image models such as pix2pix; ``fcn_score`` pix2pix's Cityscapes
FCN-scores, with the authors' FCN-8s (``fcn8s``, its weights read from their caffemodel by
``caffemodel``). Each evaluator has the same shape:
``update()`` per batch, ``compute() -> dict[str, float]``, ``reset()``.
"""
