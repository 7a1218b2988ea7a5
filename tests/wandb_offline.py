"""Offline wandb runs read back with wandb's own reader, for the tests.

``wandb.Api`` cannot read an offline run, and wandb 0.31 has no Python reader of the run's ``.wandb`` transaction log
(its records are protobufs in a LevelDB-style log that wandb-core reads). ``wandb leet inspect --json FILE`` is
wandb's reader: wandb-core decodes every record and prints it as one JSON object a line (header, run, config,
history, summary, artifact, files, exit ...). ``OfflineRun`` collects what the tests look at.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


def read_records(wandb_file) -> list[dict]:
    """Every record of a run's ``.wandb`` file, decoded by wandb-core (``wandb leet inspect --json``)."""
    done = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(wandb_file)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip().startswith("{")]


@dataclass
class OfflineRun:
    folder: Path
    records: list[dict]
    run: dict = field(default_factory=dict)  # the run record: run_id, job_type, run_group, display_name, project
    config: dict = field(default_factory=dict)  # config updates merged, dotted keys as wandb writes them
    history: list[dict] = field(default_factory=list)  # one dict per logged step
    summary: dict = field(default_factory=dict)  # summary updates merged
    logged_artifacts: list[dict] = field(default_factory=list)  # this run's outputs (user artifacts, run tables)
    used_artifacts: list[dict] = field(default_factory=list)  # its inputs: use_after_commit artifacts, use records
    exit_code: int | None = None

    @property
    def job_type(self) -> str | None:
        return self.run.get("job_type")

    @property
    def group(self) -> str | None:
        return self.run.get("run_group")

    def history_keys(self) -> set[str]:
        return {key for item in self.history for key in item}

    def artifact(self, name: str, used: bool = False) -> dict | None:
        for artifact in self.used_artifacts if used else self.logged_artifacts:
            if artifact.get("name") == name:
                return artifact
        return None


def _merge_updates(target: dict, items) -> None:
    for item in items or []:
        key = ".".join(item["nested_key"]) if item.get("nested_key") else item.get("key")
        target[key] = item.get("value_json") if "value_json" in item else item.get("value")


def _update(target: dict, update) -> None:
    """leet prints config/summary updates either as a mapping or as wandb's item list."""
    if isinstance(update, dict):
        target.update(update)
    else:
        _merge_updates(target, update)


def read_run(folder) -> OfflineRun:
    folder = Path(folder)
    wandb_file = next(folder.glob("run-*.wandb"))
    result = OfflineRun(folder, read_records(wandb_file))
    for record in result.records:
        kind = record.get("type")
        body = record.get(kind) or {}
        if kind == "run":
            result.run = body
            _update(result.config, (body.get("config") or {}).get("update"))
        elif kind == "config":
            _update(result.config, body.get("update"))
        elif kind == "history":
            item = {}
            _update(item, body.get("item"))
            result.history.append(item)
        elif kind == "summary":
            _update(result.summary, body.get("update"))
        elif kind == "artifact":
            (result.used_artifacts if body.get("use_after_commit") else result.logged_artifacts).append(body)
        elif kind == "use_artifact":
            result.used_artifacts.append(body)
        elif kind == "exit":
            result.exit_code = body.get("exit_code", 0)
    return result


def read_runs(wandb_dir, timeout_s: float = 60.0) -> list[OfflineRun]:
    """Every offline run under ``<wandb_dir>/wandb``, once each has its exit record (wandb-core writes the log on
    its own schedule, possibly just after the script has returned)."""
    deadline = time.monotonic() + timeout_s
    while True:
        runs = [read_run(folder) for folder in sorted(Path(wandb_dir, "wandb").glob("offline-run-*"))]
        if all(run.exit_code is not None for run in runs) or time.monotonic() > deadline:
            return runs
        time.sleep(1.0)
