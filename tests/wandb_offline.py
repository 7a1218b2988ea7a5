"""Read an offline wandb run back, for tests that assert on what a stage logged.

wandb 0.31's Python package no longer ships the reader that ``wandb sync`` used (``sdk/internal/datastore.py``); the
reader is in wandb-core, and ``wandb leet inspect --json <run>.wandb`` prints each record of a run file as one JSON
line (header, run, config, history, summary, artifact, files, exit). This module runs it and collects the records.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

WANDB_CLI = Path(sys.executable).with_name("wandb")


def read_records(path) -> list[dict]:
    out = subprocess.run([str(WANDB_CLI), "leet", "inspect", "--json", str(path)], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


@dataclass
class OfflineRun:
    """What one offline run holds, decoded. Nested history/summary keys read "a.b" (wandb-core flattens them)."""

    folder: Path
    run_id: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    project: str = ""
    start: str = ""
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    artifacts: list[dict] = field(default_factory=list)  # logged and used, in order (wandb's ArtifactRecord)
    exit_code: int | None = None

    def logged(self) -> list[dict]:
        return [a for a in self.artifacts if not a.get("use_after_commit")]

    def used(self) -> list[dict]:
        return [a for a in self.artifacts if a.get("use_after_commit")]

    def metric(self, key: str) -> list:
        return [row[key] for row in self.history if key in row]


def read_run(folder) -> OfflineRun:
    folder = Path(folder)
    (path,) = folder.glob("run-*.wandb")
    run = OfflineRun(folder)
    for record in read_records(path):
        kind = record.get("type")
        body = record.get(kind, {})
        if kind == "run":
            run.run_id, run.name, run.start = body.get("run_id", ""), body.get("display_name", ""), body["start_time"]
            run.group, run.job_type, run.project = body.get("run_group", ""), body.get("job_type", ""), body["project"]
            run.config.update(body.get("config", {}).get("update", {}))
        elif kind == "config":
            run.config.update(body.get("update", {}))
        elif kind == "history":
            run.history.append(body.get("item", {}))
        elif kind == "summary":
            run.summary.update(body.get("update", {}))
        elif kind == "artifact":
            run.artifacts.append(body)
        elif kind == "exit":
            run.exit_code = body.get("exit_code", 0)
    return run


def offline_runs(wandb_dir) -> list[OfflineRun]:
    """Every offline run under ``<wandb_dir>/wandb`` (or ``wandb_dir`` itself), in the order they started."""
    root = Path(wandb_dir)
    root = root / "wandb" if (root / "wandb").is_dir() else root
    return sorted((read_run(folder) for folder in root.glob("offline-run-*")), key=lambda run: run.start)
