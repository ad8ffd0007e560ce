"""Make a dataset available before a job: generate the synthetic set, verify real data.

Nothing is downloaded: real datasets are read from their root (a volume on the cluster) and
checked against the checksum manifest written when they were put there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from replicate.data.manifest import verify_manifest
from replicate.errors import DataError


def prepare_dataset(data: Any) -> str:
    """Generate or verify ``data``; return the dataset's manifest hash (environment fingerprint).

    Raises:
        DataError: a missing root, manifest, annotation file, or a checksum mismatch, by name.
    """
    if data.kind == "synthetic":
        from replicate.data.shapes import ensure_shapes

        return verify_manifest(ensure_shapes(data))
    root = Path(data.root)
    if not root.is_dir():
        raise DataError(str(root), f"dataset root of '{data.name}' not found (key: datasets.{data.name}.root)")
    # Annotation files are checksummed on every run; images are checked for existence by the
    # dataset (hashing 118k COCO images each night would cost more than it catches).
    listed = [split.annotations for split in data.splits.values() if split.annotations]
    return verify_manifest(root, listed or None)
