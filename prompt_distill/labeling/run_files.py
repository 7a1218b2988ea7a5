"""The three files a labelling run writes side by side, and the rules that keep them consistent.

- ``NAME.jsonl``: the training file. ``{"messages": [user, assistant]}`` lines, which TRL reads as is, plus a
  ``"teacher"`` entry where the sidecar record gives a target (``teacher_targets``: the teacher's label
  probabilities, or the votes of its samples); ``training_line`` makes one line from a record.
- ``NAME.meta.jsonl``: the sidecar. One record per finished sentence (labelled; unparseable after the retries;
  too_long, a prompt that does not fit the teacher's context) with the raw output and its accounting. It is the
  source of truth: the training file is rebuilt from it on every start and at the end, so a kill between writing
  the two files can neither lose nor duplicate a line. It is only ever appended to: a sentence redone later
  (``--retry_unparseable``, or a too_long sentence after the context grew) gets a new record, and the LAST record of
  an index is the one that counts; the earlier ones stay as history. A repeated sentence has no record of its own:
  it is labelled once, at its first occurrence in the input (``duplicates.first_occurrences``), and reuses that label.
- ``NAME.run.json``: the run header. What the output was made from (input file and its sha256, model, task
  fingerprint, labels, shard) plus one entry per session (backend, sampling settings). Resuming onto an output made
  from something else is refused. Its ``task`` (``task_source.task_entry``: labels, prompt text and file) is
  where training takes the task from.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..data import DataError, iter_jsonl, repair_truncated_tail, training_record
from ..duplicates import first_occurrences
from ..errors import PromptDistillError
from ..task import Task
from ..teacher_targets import teacher_target

SIDECAR_SUFFIX = ".meta.jsonl"
HEADER_SUFFIX = ".run.json"
LABELLED = "labelled"
UNPARSEABLE_STATUS = "unparseable"
TOO_LONG_STATUS = "too_long"
STATUSES = (LABELLED, UNPARSEABLE_STATUS, TOO_LONG_STATUS)

# What must match for an output to be resumed (or shards to be merged), with the flag that changes it.
IDENTITY_FIELDS = {
    "input_sha256": "--input_file (its content)",
    "model": "--teacher_model",
    "task_fingerprint": "--prompt_file / --labels",
    "labels": "--labels",
    "shard": "--shard_index / --num_shards",
}


class OutputMismatchError(PromptDistillError, RuntimeError):
    """The output on disk was made from a different input, model, prompt or shard."""


@dataclass(frozen=True)
class RunFiles:
    training: Path

    @classmethod
    def for_output(cls, output_file) -> RunFiles:
        return cls(Path(output_file))

    @property
    def _stem(self) -> str:
        name = self.training.name
        return name[: -len(".jsonl")] if name.endswith(".jsonl") else name

    @property
    def sidecar(self) -> Path:
        return self.training.with_name(self._stem + SIDECAR_SUFFIX)

    @property
    def header(self) -> Path:
        return self.training.with_name(self._stem + HEADER_SUFFIX)

    def holds_work(self) -> bool:
        """True when a sentence was finished: the training file or the sidecar holds a line."""
        return any(path.is_file() and path.stat().st_size for path in (self.training, self.sidecar))

    def remove_if_empty(self, created: list[Path]) -> None:
        """Remove the files this run created when it finished nothing (a failed model load leaves no trace)."""
        if not self.holds_work():
            for path in created:
                path.unlink(missing_ok=True)

    def existing(self) -> list[Path]:
        """Files that hold something (the lock creates an empty sidecar, which holds nothing)."""
        return [path for path in (self.training, self.sidecar, self.header) if path.is_file() and path.stat().st_size]


def check_output_path(path, flag: str) -> None:
    """Fail before any model work when an output file cannot be written where it is asked for."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{flag} {path} is a folder; give the path of a file.")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise DataError(f"{flag} {path}: {ancestor} is a file, so the folder for it cannot be created.")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise DataError(f"{flag} {path}: {ancestor} is not writable.")


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_identity(input_sha256: str, model: str, task: Task, shard_index: int, num_shards: int) -> dict:
    return {
        "input_sha256": input_sha256,
        "model": model,
        "task_fingerprint": task.fingerprint(),
        "labels": list(task.labels),
        "shard": {"index": shard_index, "count": num_shards},
    }


def identity_differences(header: dict, identity: dict, fields=IDENTITY_FIELDS) -> list[str]:
    return [
        f"{key} ({flag}): on disk {header.get(key)!r}, now {identity[key]!r}"
        for key, flag in fields.items()
        if header.get(key) != identity[key]
    ]


def read_header(files: RunFiles) -> dict | None:
    if not files.header.is_file():
        return None
    try:
        header = json.loads(files.header.read_text("utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{files.header}:{error.lineno}: not valid JSON ({error.msg}).") from None
    if not isinstance(header, dict):
        raise DataError(f"{files.header}: expected a JSON object.")
    return header


def write_json_atomic(path: Path, obj) -> None:
    _replace_atomically(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def _replace_atomically(path: Path, text: str) -> None:
    """Write a sibling temp file and rename it over ``path``: a kill leaves the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, 0o666 & ~_umask())  # mkstemp makes it 0600; the file gets the mode a plain open() gives
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def prepare_output(files: RunFiles, identity: dict, overwrite: bool) -> dict | None:
    """Clear the output (``overwrite``), or check that it may be resumed; return the previous header, if any."""
    if overwrite:
        for path in (files.training, files.sidecar):
            if path.is_file():
                os.truncate(path, 0)  # truncate, not unlink: the lock is held on the sidecar's inode
        files.header.unlink(missing_ok=True)
        return None
    existing = files.existing()
    if not existing or not files.holds_work():
        # Nothing was finished (e.g. the model failed to load after the header was written): nothing to protect.
        files.header.unlink(missing_ok=True)
        return None
    header = read_header(files)
    if header is None:
        raise OutputMismatchError(
            f"{existing[0]} exists but has no run header ({files.header}), so it cannot be resumed safely. "
            "Pass --overwrite to replace it, or choose another --output_file."
        )
    differences = identity_differences(header, identity)
    if differences:
        raise OutputMismatchError(
            f"{files.training} was made from something else, so it cannot be resumed:\n  "
            + "\n  ".join(differences)
            + "\nPass --overwrite to replace it, or choose another --output_file."
        )
    return header


@dataclass
class SidecarState:
    records: dict[int, dict]  # sentence index -> its last record
    dropped_tail: bool  # a last line cut by a crash was removed
    superseded: int  # earlier records of an index that has a later one (a retry): history, not counted
    repeat_records: int = 0  # records of a repeated sentence at a later line (an older version labelled each copy)


def load_sidecar(files: RunFiles, texts: list[str]) -> SidecarState:
    """The finished records, the last one per sentence, checked against the input: an index out of range or a
    changed sentence is an error. Records at a repeat of an earlier sentence are left out (it has one label)."""
    dropped = repair_truncated_tail(files.sidecar)
    records: dict[int, dict] = {}
    superseded = repeats = 0
    if not files.sidecar.is_file():
        return SidecarState(records, dropped, superseded)
    firsts = first_occurrences(texts)
    for number, record in iter_jsonl(files.sidecar):
        where = f"{files.sidecar}:{number}"
        index = record.get("index")
        if not isinstance(index, int) or not 0 <= index < len(texts):
            raise DataError(f"{where}: 'index' {index!r} is not a sentence of the input ({len(texts)} sentences).")
        if record.get("text") != texts[index]:
            raise DataError(f"{where}: the sentence differs from sentence {index} of the input; was the input edited?")
        if record.get("status") not in STATUSES:
            raise DataError(f"{where}: 'status' must be one of {', '.join(STATUSES)}.")
        if firsts[index] != index:
            repeats += 1
            continue
        superseded += index in records
        records[index] = record
    return SidecarState(records, dropped, superseded, repeats)


def training_line(record: dict, labels) -> dict:
    """The training file's line for a labelled sidecar record: the chat, and the teacher's target where it has one
    (an older record, without label probabilities or votes, gives the chat alone)."""
    target = teacher_target(record, labels)
    return training_record(record["text"], record["label"], None if target is None else target.to_json())


def rebuild_training_file(files: RunFiles, records: dict[int, dict], labels) -> int:
    """Rewrite the training file from the sidecar's labelled records, in input order; return the line count."""
    lines = [
        json.dumps(training_line(records[index], labels), ensure_ascii=False) + "\n"
        for index in sorted(records)
        if records[index]["status"] == LABELLED
    ]
    _replace_atomically(files.training, "".join(lines))
    return len(lines)


def write_sidecar(files: RunFiles, records: dict[int, dict]) -> None:
    """Write a whole sidecar at once (the merge of shards), in input order."""
    text = "".join(json.dumps(records[index], ensure_ascii=False) + "\n" for index in sorted(records))
    _replace_atomically(files.sidecar, text)


class OutputLock:
    """Refuse a second process on the same output: two writers would interleave and duplicate records."""

    def __init__(self, files: RunFiles):
        self.files = files
        self._handle = None

    def __enter__(self):
        self.files.sidecar.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.files.sidecar, "a", encoding="utf-8")  # noqa: SIM115 (held until __exit__)
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.close()
            raise OutputMismatchError(
                f"Another process is writing {self.files.training} (its sidecar {self.files.sidecar} is locked)."
            ) from None
        return self

    def __exit__(self, *exc):
        self._handle.close()  # closing releases the lock; so does the process dying
