"""Read back what wandb wrote offline: the protobuf Records of a run's ``.wandb`` file.

wandb 0.31 ships no datastore reader (the Go core writes the file), so this is a small one.
The file is a LevelDB-log-style stream: wandb's 7-byte header (``:W&B``, magic 0xBEE1 little
endian, version byte), then 32 KiB blocks of chunks, each with a 7-byte header (CRC-32,
length, type FULL/FIRST/MIDDLE/LAST) followed by its bytes. A record too long for the rest of
a block continues in the next block (FIRST, MIDDLE..., LAST); a block tail shorter than a
chunk header is zero padding. Measured on wandb 0.31's files: the checksum is zlib's CRC-32
(IEEE) over the type byte and the data, not LevelDB's masked CRC-32C; both are accepted.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from wandb.proto import wandb_internal_pb2 as pb

FILE_IDENT, FILE_MAGIC = b":W&B", 0xBEE1
FILE_HEADER = struct.Struct("<4sHB")
CHUNK_HEADER = struct.Struct("<IHB")
BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


class CorruptWandbFile(ValueError):
    """The file is not a wandb log, or a chunk fails its checksum."""


def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _masked(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _checksum_ok(stored: int, kind: int, data: bytes) -> bool:
    if zlib.crc32(bytes([kind]) + data) & 0xFFFFFFFF == stored:
        return True
    return _masked(_crc32c(bytes([kind]) + data)) == stored   # LevelDB's own convention


def _chunks(raw: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, data) of every chunk after the file header, block padding skipped."""
    pos = FILE_HEADER.size
    while pos + CHUNK_HEADER.size <= len(raw):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < CHUNK_HEADER.size:
            pos += left_in_block
            continue
        crc, length, kind = CHUNK_HEADER.unpack_from(raw, pos)
        if kind == 0 and length == 0:      # zero padding (or a preallocated tail)
            pos += left_in_block
            continue
        data = raw[pos + CHUNK_HEADER.size:pos + CHUNK_HEADER.size + length]
        if len(data) != length or not _checksum_ok(crc, kind, data):
            raise CorruptWandbFile(f"bad chunk at byte {pos} (type {kind}, length {length})")
        yield kind, data
        pos += CHUNK_HEADER.size + length


def read_records(path: Path) -> list[pb.Record]:
    """Every protobuf Record of a ``.wandb`` file, in write order.

    Raises:
        CorruptWandbFile: bad file header, bad checksum or a broken FIRST..LAST sequence.
    """
    raw = Path(path).read_bytes()
    ident, magic, _version = FILE_HEADER.unpack_from(raw, 0)
    if ident != FILE_IDENT or magic != FILE_MAGIC:
        raise CorruptWandbFile(f"{path}: not a wandb log (header {raw[:7]!r})")
    records, pending = [], None
    for kind, data in _chunks(raw):
        if kind == FULL and pending is None:
            payload = data
        elif kind == FIRST and pending is None:
            pending = bytearray(data)
            continue
        elif kind == MIDDLE and pending is not None:
            pending += data
            continue
        elif kind == LAST and pending is not None:
            payload, pending = bytes(pending + data), None
        else:
            raise CorruptWandbFile(f"{path}: chunk type {kind} out of sequence")
        record = pb.Record()
        record.ParseFromString(payload)
        records.append(record)
    return records


def _key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


@dataclass
class RunLog:
    """What one offline run recorded, decoded: run metadata, config, history rows, summary."""

    path: Path
    run: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None

    @property
    def files_dir(self) -> Path:
        return self.path.parent / "files"


def _apply_config(out: RunLog, config: Any) -> None:
    for item in config.update:
        value = json.loads(item.value_json)
        # wandb wraps each top-level config value as {"value": ...} and keeps its own "_wandb".
        out.config[_key(item)] = value.get("value", value) if isinstance(value, dict) else value


def read_run(path: Path) -> RunLog:
    """Decode the run, config, history, summary, artifact and exit records of one run file."""
    out = RunLog(Path(path))
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            out.run = {"run_id": r.run_id, "project": r.project, "entity": r.entity, "group": r.run_group,
                       "job_type": r.job_type, "name": r.display_name}
            _apply_config(out, r.config)
        elif kind == "config":
            _apply_config(out, record.config)
        elif kind == "history":
            row = {_key(i): json.loads(i.value_json) for i in record.history.item}
            out.history.append(row)
        elif kind == "summary":
            out.summary.update({_key(i): json.loads(i.value_json) for i in record.summary.update})
        elif kind == "artifact":
            a = record.artifact
            out.artifacts.append({"type": a.type, "name": a.name,
                                  "paths": [e.path for e in a.manifest.contents]})
        elif kind == "exit":
            out.exit_code = record.exit.exit_code
    return out


def offline_runs(root: Path) -> list[RunLog]:
    """Every offline run under ``root`` (a ``wandb`` dir or one above it), oldest first."""
    return [read_run(p) for p in sorted(Path(root).rglob("offline-run-*/run-*.wandb"))]
