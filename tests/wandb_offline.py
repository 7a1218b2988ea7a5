"""Read an offline wandb run back from its ``run-<id>.wandb`` file, for tests that assert on what a stage logged.

wandb 0.31's Python package no longer ships the reader that ``wandb sync`` used (``sdk/internal/datastore.py``; the
reader now lives in the Go ``wandb-core``), but the file format is unchanged: a 7-byte header (``:W&B``, a magic
number, a version) and then a LevelDB-style log of 32 KiB blocks, each chunk ``crc32 (4) | length (2) | type (1)``
(full / first / middle / last), holding serialized ``wandb_internal.Record`` protobufs. The records are decoded with
wandb's own protobuf classes (``wandb.proto.wandb_internal_pb2``).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path) -> list:
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a wandb run file"
    records, pending, position = [], b"", HEADER
    while position + HEADER <= len(data):
        if BLOCK - position % BLOCK < HEADER:  # the rest of a block too short for a chunk header is padding
            position += BLOCK - position % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + HEADER])
        chunk = data[position + HEADER:position + HEADER + length]
        position += HEADER + length
        if kind == 0 and length == 0:
            position += BLOCK - position % BLOCK if position % BLOCK else 0
            continue
        if kind in (FULL, FIRST):
            pending = chunk
        else:
            pending += chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


@dataclass
class OfflineRun:
    """What one offline run holds, decoded."""

    folder: Path
    run_id: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    project: str = ""
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    artifacts: list = field(default_factory=list)  # wandb_internal.ArtifactRecord, logged (and used) in order
    exit_code: int | None = None
    start: float = 0.0

    def logged(self) -> list:
        return [a for a in self.artifacts if not a.use_after_commit]

    def used(self) -> list:
        return [a for a in self.artifacts if a.use_after_commit]

    def metric(self, key: str) -> list:
        return [row[key] for row in self.history if key in row]


def _value(item) -> object:
    return json.loads(item.value_json) if item.value_json else None


def _key(item) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def read_run(folder) -> OfflineRun:
    folder = Path(folder)
    (path,) = folder.glob("run-*.wandb")
    run = OfflineRun(folder)
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run_id, run.name = record.run.run_id, record.run.display_name
            run.group, run.job_type, run.project = record.run.run_group, record.run.job_type, record.run.project
            run.start = record.run.start_time.ToMicroseconds() / 1e6
            for item in record.run.config.update:
                run.config[_key(item)] = _value(item)
        elif kind == "config":
            for item in record.config.update:
                run.config[_key(item)] = _value(item)
        elif kind == "history":
            run.history.append({_key(item): _value(item) for item in record.history.item})
        elif kind == "summary":
            for item in record.summary.update:
                run.summary[_key(item)] = _value(item)
        elif kind == "artifact":
            run.artifacts.append(record.artifact)
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    run.config = {key: value.get("value") if isinstance(value, dict) and "value" in value else value
                  for key, value in run.config.items()}
    return run


def offline_runs(wandb_dir) -> list[OfflineRun]:
    """Every offline run under ``<wandb_dir>/wandb`` (or ``wandb_dir`` itself), oldest first."""
    root = Path(wandb_dir)
    root = root / "wandb" if (root / "wandb").is_dir() else root
    return sorted((read_run(folder) for folder in root.glob("offline-run-*")), key=lambda run: run.start)
