"""Which weights file a job loads, and whether it is the file that was published.

An eval tier scores its released checkpoint (``model.tiers.eval.released``): with no
``checkpoint=`` it is found under ``released.directory`` (``$ZOO_DATA_ROOT/checkpoints``), never
downloaded. Before it is loaded its sha256 is computed; where the publisher's hash prefix is known
(torchvision's file names carry it), a file that does not match is refused naming both: a
re-saved, truncated or other checkpoint must not be scored as the published one. Where no hash
was published (the Darknet weights), the job records the file's hash so a lab sees which one
scored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from replicate.errors import DataError

CHUNK = 1 << 20


@dataclass(frozen=True)
class WeightsFile:
    """A weights file a job loads; ``published_prefix`` and ``source`` when it is a released one."""

    path: Path
    published_prefix: Optional[str] = None
    source: Optional[str] = None

    @property
    def released(self) -> bool:
        return self.source is not None


def weights_for(cfg: Any) -> Optional[WeightsFile]:
    """``checkpoint=`` if given (the released file's hash still checked when it is that file);
    else a non-training tier's released checkpoint; else None (a training tier starts afresh)."""
    released = _tier_entry(cfg, "released")
    if cfg.checkpoint:
        path = Path(str(cfg.checkpoint)).expanduser()
        if released is not None and path.name == released.file:
            return WeightsFile(path, released.sha256_prefix, released.source)
        return WeightsFile(path)
    if released is not None and not cfg.tier.trains:
        return published_file(released)
    return None


def _tier_entry(cfg: Any, key: str) -> Any:
    """``model.tiers.<the job's tier>.<key>``, or None (also when the model lacks the tier)."""
    tier = cfg.model.tiers.get(cfg.tier.name)
    return tier.get(key) if tier is not None else None


def published_file(entry: Any) -> WeightsFile:
    """A published file a tier names (``released``, ``backbone_weights``): where the lab placed it."""
    return WeightsFile(Path(str(entry.directory)) / entry.file, entry.sha256_prefix, entry.source)


def checked_tier_file(tier_cfg: Any, key: str) -> Optional[tuple[WeightsFile, str]]:
    """The published file a task's tier names under ``key`` (``backbone_weights``,
    ``segmenter``) and its sha256, once :func:`verify` has found it where the lab placed it and,
    where a hash was published, matching it; None when the tier names none."""
    entry = tier_cfg.get(key)
    if entry is None:
        return None
    weights = published_file(entry)
    return weights, verify(weights)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(weights: WeightsFile) -> str:
    """The file's sha256; DataError (naming the file) when it is missing or is not the published one."""
    if not weights.path.is_file():
        where = f" (place the released file from {weights.source} there)" if weights.released else ""
        raise DataError(str(weights.path), f"checkpoint file not found{where}")
    digest = sha256_of(weights.path)
    if weights.published_prefix and not digest.startswith(weights.published_prefix.lower()):
        raise DataError(str(weights.path), f"sha256 {digest[:16]}... does not start with {weights.published_prefix}, "
                                           f"the hash published with it ({weights.source}): not the released file")
    return digest


def backbone_weights_for(cfg: Any) -> Optional[WeightsFile]:
    """A training tier's pretrained trunk (``model.tiers.<tier>.backbone_weights``), or None."""
    trunk = _tier_entry(cfg, "backbone_weights")
    if trunk is None or not cfg.tier.trains:
        return None
    return published_file(trunk)


def segmenter_for(cfg: Any) -> Optional[WeightsFile]:
    """The network a tier's metric is measured with (``model.tiers.<tier>.segmenter``), or None."""
    entry = _tier_entry(cfg, "segmenter")
    return published_file(entry) if entry is not None else None
