"""Checkpoints: data, never code; written atomically; a torn or foreign file never wedges a job.

* Loading uses ``torch.load(weights_only=True)``: tensors, numbers, strings and containers only.
  A file holding other Python objects (a pickle that would run code to load) is refused with its
  path named. What the loops store is kept to those types (numpy arrays travel as tensors).
* A save writes a temp file unique to the process, then renames it over ``latest.pt``: a crash
  never leaves a torn checkpoint, two writers never share a temp file, and a failed write (disk
  full) removes its temp file and raises :class:`~replicate.errors.StorageError` naming the path.
* A ``latest.pt`` that cannot be read is moved aside (kept for inspection) by
  :func:`discard`; the job then starts over and records why.
"""

from __future__ import annotations

import fcntl
import json
import os
import pickle
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from replicate.errors import DataError, StorageError

LATEST = "latest.pt"
DONE = "done.json"
PROGRESS = "progress.json"
INITIAL_WEIGHTS = "initial_weights.pt"   # the weights at step 0, until the early check measured the drift
LOCK = ".lock"


class JobLock:
    """An exclusive lock on a job's checkpoint directory, held while the job runs.

    ``holder`` is None when this process got the lock, else the pid written by the process that
    holds it. The kernel drops the lock when its holder dies, so a killed run never blocks the
    next one.
    """

    def __init__(self, directory: Path):
        self.path, self._fd = directory / LOCK, -1
        self.holder: str | None = None

    def __enter__(self) -> "JobLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StorageError(str(self.path), exc) from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "unknown"
            return self
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing releases the lock


def save(directory: Path, state: dict[str, Any]) -> Path:
    return save_file(directory / LATEST, state)


def save_file(target: Path, state: Any) -> Path:
    """Write ``state`` (tensors and plain data) to ``target`` atomically: a crash leaves the old file."""
    directory = target.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise StorageError(str(target), exc) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
        os.replace(tmp, target)
    except (OSError, RuntimeError) as exc:  # torch reports a failed write (ENOSPC) as RuntimeError
        Path(tmp).unlink(missing_ok=True)
        raise StorageError(str(target), exc) from None
    return target


def load_file(path: Path) -> Any:
    """A checkpoint's content as plain data; DataError naming ``path`` when it is not one."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(str(path), "refused: it holds Python objects besides tensors and plain data, and "
                                   f"loading it could run code ({reason[:160]})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(str(path), f"not a readable checkpoint ({reason[:160]})") from None


def load_state_file(model: torch.nn.Module, path: Path) -> None:
    """Weights from a torch file (read as data only) into ``model``, every key fitting: ours hold
    "model", reference repos "state_dict" or the bare state dict; DataError naming the file when
    they do not fit."""
    state = load_file(path)
    if isinstance(state, dict):
        state = state.get("model", state.get("state_dict", state))
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(str(path), "holds no state dict of tensors")
    # DataParallel-trained files prefix every key with "module."
    state = {k.removeprefix("module."): v for k, v in state.items()}
    # The model's own loader decides what fits (torchvision's FrozenBatchNorm2d drops the
    # released files' num_batches_tracked, which its state_dict lacks); on a misfit the message
    # names the first mismatching key, else torch's own lines.
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        # torch lists the missing and unexpected keys on the lines after its header: one line here
        detail = " ".join(line.strip() for line in str(exc).splitlines()[1:]) or str(exc)
        mismatch = first_mismatch(model.state_dict(), state)
        raise DataError(str(path), f"does not fit the model: {mismatch or detail[:300]}") from None


def first_mismatch(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> str | None:
    """The first key (in the model's order, then the file's) that the model lacks, the file
    lacks, or whose shape differs, with how many others mismatch; None when every key fits."""
    problems = [f"key {k!r}: shape {list(state[k].shape)} in the file, {list(v.shape)} in the model"
                if k in state else f"key {k!r} is missing from the file"
                for k, v in expected.items() if k not in state or state[k].shape != v.shape]
    # a module's loader may drop a counter its state_dict lacks (FrozenBatchNorm2d): not a misfit
    problems += [f"key {k!r} is not in the model" for k in state
                 if k not in expected and not k.endswith("num_batches_tracked")]
    if not problems:
        return None
    return problems[0] + (f" (and {len(problems) - 1} more mismatching keys)" if len(problems) > 1 else "")


def load_latest(directory: Path) -> dict[str, Any] | None:
    path = directory / LATEST
    if not path.is_file():
        return None
    state = load_file(path)
    if not isinstance(state, dict) or "step" not in state:
        raise DataError(str(path), "not a checkpoint of this loop (no training step recorded)")
    return state


def discard(directory: Path, reason: str) -> dict[str, str]:
    """Move an unreadable ``latest.pt`` aside; what to record on the job (path kept, reason)."""
    source = directory / LATEST
    kept = directory / f"{LATEST}.unreadable-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}"
    os.replace(source, kept)
    return {"path": str(kept), "reason": reason}


def numpy_rng_state() -> dict[str, Any]:
    """numpy's global generator state, in types a weights-only load accepts."""
    name, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    return {"name": name, "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def set_numpy_rng_state(state: dict[str, Any]) -> None:
    np.random.set_state((state["name"], state["keys"].numpy().astype(np.uint32), state["pos"],
                         state["has_gauss"], state["gauss"]))


def array_to_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array, order="C"))  # not ascontiguousarray: it makes 0-d arrays 1-d


def tensor_to_array(value: Any) -> np.ndarray:
    return value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def write_json(path: Path, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise StorageError(str(path), exc) from None
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(data))
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise StorageError(str(path), exc) from None


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
