"""Train/evaluation leakage: does the split a job evaluates on share images with the split it
trains on? A model scored on images it was trained on measures memorisation, and on a small or
easy dataset the inflated metric can still sit inside its band (a default ``split="train"`` left
in an evaluation script, a validation folder copied from the training one).

Content, not names: each split's files are compared by the sha256 the dataset's checksum
manifest already records (replicate/data/manifest.py), so nothing is re-read and a renamed copy
is caught as well as the same folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from replicate.data.manifest import read_manifest
from replicate.errors import SplitLeak

# A few byte-identical images across real splits (a duplicate photo) are data, not a leak; an
# evaluation that reads the training split shares all of them.
MAX_SHARED_SHARE = 0.01


@dataclass(frozen=True)
class SplitOverlap:
    """How many of the evaluation split's files have the same content as a training file."""

    eval_split: str
    train_split: str
    shared: int
    eval_files: int
    example: Optional[str] = None   # one shared file of the evaluation split, to name it


def _folders(data: Any, split: str) -> list[str]:
    """The folders (relative to the root, POSIX, with a trailing slash) holding ``split``'s files."""
    spec = data.splits[split]
    return [f"{Path(str(folder)).as_posix().rstrip('/')}/" for folder in (spec.images, spec.pairs) if folder]


def _hashes(files: dict[str, str], folders: list[str]) -> dict[str, str]:
    return {key: digest for key, digest in files.items() if any(key.startswith(f) for f in folders)}


def split_overlap(data: Any, eval_split: str, train_split: str) -> Optional[SplitOverlap]:
    """The overlap of ``eval_split`` with ``train_split`` by content; None when the manifest
    records no file of the evaluation split (nothing to compare by content)."""
    files = read_manifest(Path(data.root)).get("files", {})
    evaluated = _hashes(files, _folders(data, eval_split))
    if not evaluated:
        return None
    trained = set(_hashes(files, _folders(data, train_split)).values())
    shared = sorted(key for key, digest in evaluated.items() if digest in trained)
    return SplitOverlap(eval_split, train_split, len(shared), len(evaluated), shared[0] if shared else None)


def check_no_leak(data: Any, eval_split: str, train_split: str) -> Optional[SplitOverlap]:
    """Raise SplitLeak when more than MAX_SHARED_SHARE of the evaluation split's files are training
    files; return the overlap measured (None: the manifest lists no file of the split)."""
    overlap = split_overlap(data, eval_split, train_split)
    if overlap is not None and overlap.shared > MAX_SHARED_SHARE * overlap.eval_files:
        raise SplitLeak(f"{overlap.shared} of the {overlap.eval_files} files of evaluation split {eval_split!r} "
                        f"have the content of a file of training split {train_split!r} (e.g. {overlap.example}): "
                        f"the metric would measure memorisation (dataset {data.name}, {data.root})")
    return overlap
