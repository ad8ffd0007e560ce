"""Checkpoints: written atomically (temp file + rename) so a crash never leaves a torn file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

LATEST = "latest.pt"
DONE = "done.json"
PROGRESS = "progress.json"


def save(directory: Path, state: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{LATEST}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, directory / LATEST)
    return directory / LATEST


def load_latest(directory: Path) -> dict[str, Any] | None:
    path = directory / LATEST
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
