"""Datasets: the synthetic shapes set, checksum manifests, and torch Datasets read from disk.

Modules:
    shapes: deterministic writer of the smoke-tier "shapes" set (COCO detection + paired images).
    manifest: sha256 manifest of a dataset root; its hash enters the environment fingerprint.
    coco_dataset: ``CocoDetection`` for COCO-format detection data, collate and flip transform.
    paired_dataset: ``PairedImages`` for label-map -> photo pairs (pix2pix).

Nothing is imported or generated at package import time.
"""
