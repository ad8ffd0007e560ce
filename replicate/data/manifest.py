"""Checksum manifest of a dataset root: ``root/manifest.json`` maps relative paths to sha256.

The manifest is written once when a dataset is put in place and verified before every run, so a
missing or silently modified file is reported by name instead of surfacing as a bad metric. The
hash of the manifest itself identifies the dataset version in the environment fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from replicate.errors import DataError

MANIFEST_NAME = "manifest.json"
ALGORITHM = "sha256"
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """Returns the hex sha256 of a file, read in chunks so large files need little memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _relpath(root: Path, path: Path | str) -> str:
    """Normalises a path (absolute or relative to ``root``) to the manifest's POSIX key."""
    path = Path(path)
    if path.is_absolute():
        path = path.relative_to(root)
    return path.as_posix()


def _walk(root: Path) -> list[str]:
    """Lists every regular file under ``root`` except the manifest, as sorted POSIX keys."""
    keys = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            full = Path(dirpath) / name
            key = full.relative_to(root).as_posix()
            if key != MANIFEST_NAME:
                keys.append(key)
    return sorted(keys)


def canonical_hash(manifest: dict) -> str:
    """Returns the sha256 of the manifest's canonical JSON (sorted keys, no whitespace).

    Canonical form makes the hash independent of how the file happens to be formatted.
    """
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_manifest(root: Path, files: Iterable[Path | str] | None = None) -> Path:
    """Writes ``root/manifest.json`` with the sha256 of each file.

    Args:
        root: Dataset root directory.
        files: Files to record, absolute or relative to ``root``; ``None`` records every file
            under ``root`` (except the manifest itself).

    Returns:
        The path of the written manifest.

    Raises:
        DataError: A listed file does not exist.
    """
    root = Path(root)
    keys = _walk(root) if files is None else sorted({_relpath(root, f) for f in files})
    entries = {}
    for key in keys:
        path = root / key
        if not path.is_file():
            raise DataError(str(path), "file to record in the manifest does not exist")
        entries[key] = file_sha256(path)
    manifest = {"algorithm": ALGORITHM, "files": entries}
    target = root / MANIFEST_NAME
    # Write-then-rename: a crash never leaves a truncated manifest that would fail every run.
    tmp = target.with_name(f".{MANIFEST_NAME}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(manifest, sort_keys=True, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


def read_manifest(root: Path) -> dict:
    """Loads and structurally checks ``root/manifest.json``.

    Raises:
        DataError: The manifest is missing, not JSON, or lacks the expected keys.
    """
    path = Path(root) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(str(path), "manifest is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(str(path), f"manifest is unreadable: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise DataError(str(path), "manifest has no 'files' mapping")
    if manifest.get("algorithm") != ALGORITHM:
        raise DataError(str(path), f"unsupported algorithm {manifest.get('algorithm')!r}")
    return manifest


def verify_manifest(root: Path, files: Iterable[Path | str] | None = None) -> str:
    """Checks files against ``root/manifest.json`` and returns the manifest hash.

    Args:
        root: Dataset root directory.
        files: Subset to check (absolute or relative to ``root``); ``None`` checks every file the
            manifest lists. Checking a subset (e.g. the annotation files) keeps the check cheap on
            a dataset of many gigabytes.

    Returns:
        The sha256 of the canonical manifest JSON (identifies the dataset version).

    Raises:
        DataError: Naming the manifest (missing or unreadable), or the first file that is
            missing, not listed in the manifest, or whose checksum differs.
    """
    root = Path(root)
    manifest = read_manifest(root)
    recorded = manifest["files"]
    keys = sorted(recorded) if files is None else [_relpath(root, f) for f in files]
    for key in keys:
        path = root / key
        if key not in recorded:
            raise DataError(str(path), "file is not listed in the manifest")
        try:
            actual = file_sha256(path)
        except FileNotFoundError:
            raise DataError(str(path), "file listed in the manifest is missing") from None
        except OSError as exc:
            raise DataError(str(path), f"file is unreadable: {exc}") from None
        if actual != recorded[key]:
            raise DataError(str(path), "checksum mismatch (file was modified or is corrupt)")
    return canonical_hash(manifest)
