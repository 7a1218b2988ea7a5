"""Files on disk: input sentences, gold labels, the training JSONL, and the deterministic train/eval split.

Every error names the file and line, because users edit these files by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .cli import flag
from .duplicates import distinct_examples
from .errors import DataError

if TYPE_CHECKING:  # annotations only: task.py reads its files with this module
    from .task import Task

SPLITS = ("train", "eval", "all")
DEFAULT_EVAL_FRACTION = 0.2
DEFAULT_SPLIT_SEED = 0


def _where(path, line: int | None = None) -> str:
    return f"{path}:{line}" if line is not None else str(path)


# -- reading a user's text file ---------------------------------------------------------------------------
_BOM = b"\xef\xbb\xbf"


def _line_and_column(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and byte column of ``data[offset]`` (any of \\n, \\r\\n, \\r ends a line)."""
    before = data[:offset].replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    start = before.rfind(b"\n") + 1
    return before.count(b"\n") + 1, len(before) - start + 1


def read_text(path) -> str:
    """The one reader of every text file a user gives us (sentences, gold TSV, JSONL, JSON, prompt, labels).

    UTF-8 only, with errors that name ``file:line``; a leading UTF-8 byte-order mark is dropped (it is not text);
    CRLF and CR line endings become ``\\n``, so no line ends in ``\\r``; a NUL byte means a binary file.
    """
    path = Path(path)
    data = path.read_bytes()
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    for mark in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16 (Windows Notepad's "Unicode"); UTF-32 starts the same
        if data.startswith(mark):
            raise DataError(
                f"{_where(path, 1)}: UTF-16 (byte-order mark 0x{mark[0]:02x} 0x{mark[1]:02x}), not UTF-8; "
                "save it as UTF-8."
            )
    nul = data.find(b"\x00")
    if nul >= 0:
        line, column = _line_and_column(data, nul)
        raise DataError(f"{_where(path, line)}: a NUL byte at column {column}; this is a binary file, not UTF-8 text.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line, column = _line_and_column(data, error.start)
        raise DataError(f"{_where(path, line)}: not UTF-8 (byte 0x{data[error.start]:02x} at column {column})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_lines(path) -> list[str]:
    """``read_text`` split into lines at line endings only: unlike ``str.splitlines``, a U+2028 or form feed inside
    a sentence does not split it (that would misalign a gold file and break a JSON line)."""
    text = read_text(path)
    if not text:
        return []
    return text[:-1].split("\n") if text.endswith("\n") else text.split("\n")


# -- sentences and gold labels --------------------------------------------------------------------------
@dataclass
class Sentences:
    texts: list[str]
    blank_lines: int
    line_numbers: list[int] = field(default_factory=list)  # 1-based input line of each text


def read_sentences(path) -> Sentences:
    """One sentence per line (the reference input format); blank lines are skipped and counted."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: input file not found.")
    texts, numbers, blank = [], [], 0
    for number, text in enumerate(read_lines(path), start=1):
        if text.strip():
            texts.append(text.strip())
            numbers.append(number)
        else:
            blank += 1
    if not texts:
        raise DataError(f"{path}: the file has no sentences (it is empty or blank).")
    return Sentences(texts, blank, numbers)


def gold_path_for(sentences_path) -> Path:
    """``example-data/multilingual.txt`` -> ``example-data/multilingual.gold.tsv``."""
    path = Path(sentences_path)
    return path.with_name(path.stem + ".gold.tsv")


def read_gold(sentences_path, task: Task) -> dict[str, str] | None:
    """Gold labels for a sentence file, keyed by sentence; None when the file has no gold file beside it.

    The gold file has ``label<TAB>sentence`` on the same line number as the sentence in the .txt file, and the
    sentence is repeated so that a misaligned file is an error instead of silently wrong grading.
    """
    gold_path = gold_path_for(sentences_path)
    if not gold_path.is_file():
        return None
    sentence_lines = read_lines(sentences_path)
    gold_lines = read_lines(gold_path)
    if len(gold_lines) != len(sentence_lines):
        raise DataError(
            f"{gold_path}: {len(gold_lines)} lines, but {sentences_path} has {len(sentence_lines)}; they must align."
        )
    gold: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, (gold_line, sentence) in enumerate(zip(gold_lines, sentence_lines, strict=True), start=1):
        if not sentence.strip() and not gold_line.strip():
            continue
        label, tab, text = gold_line.partition("\t")
        if not tab:
            raise DataError(f"{_where(gold_path, number)}: expected 'label<TAB>sentence'.")
        if text.strip() != sentence.strip():
            raise DataError(
                f"{_where(gold_path, number)}: the sentence differs from line {number} of {sentences_path}; "
                "the files are misaligned."
            )
        if label not in task.labels:
            raise DataError(f"{_where(gold_path, number)}: unknown label {label!r}; labels: {', '.join(task.labels)}.")
        key = sentence.strip()
        if gold.get(key, label) != label:
            raise DataError(f"{_where(gold_path, number)}: this sentence is labelled {label!r} here but {gold[key]!r} "
                            f"at {_where(gold_path, first_line[key])}; one sentence has one gold label.")
        gold[key] = label
        first_line.setdefault(key, number)
    return gold


# -- JSONL ------------------------------------------------------------------------------------------------
def iter_jsonl(path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)``; blank lines are skipped, a malformed line is a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found.")
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{_where(path, number)}: not valid JSON ({error.msg}).") from None
        if not isinstance(record, dict):
            raise DataError(f"{_where(path, number)}: expected a JSON object.")
        yield number, record


def read_json_object(path) -> dict:
    """A JSON file holding one object (run records, adapter configs, saved predictions); errors name file:line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found.")
    try:
        payload = json.loads(read_text(path))
    except json.JSONDecodeError as error:
        raise DataError(f"{_where(path, error.lineno)}: not valid JSON ({error.msg}).") from None
    if not isinstance(payload, dict):
        raise DataError(f"{path}: expected a JSON object.")
    return payload


def repair_truncated_tail(path) -> bool:
    """Drop a last line cut off by a crash (no newline, not JSON). Returns True when something was dropped."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return False
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return False
    cut = data.rfind(b"\n") + 1
    try:
        json.loads(data[cut:])
        with path.open("ab") as handle:  # a complete record that only lacks its newline
            handle.write(b"\n")
        return False
    except ValueError:
        with path.open("r+b") as handle:
            handle.truncate(cut)
        return True


class JsonlAppender:
    """Append records and flush each batch to the OS, so a killed process (even SIGKILL) loses nothing written."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("a", encoding="utf-8")

    def write(self, records: list[dict]) -> None:
        for record in records:
            self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_jsonl(path, records) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


# -- training examples ------------------------------------------------------------------------------------
def training_record(text: str, label: str, teacher: dict | None = None) -> dict:
    """The reference format: a chat with the sentence as the user turn and the label as the assistant turn; plus,
    where the teacher gave more than its label, ``"teacher"``: its distribution over the labels
    (``teacher_targets.TeacherTarget.to_json()``), which soft-target training reads and hard training ignores."""
    record = {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": label}]}
    if teacher is not None:
        record["teacher"] = teacher
    return record


def example_from_record(record: dict, task: Task, path, number: int) -> tuple[str, str]:
    """Validate one training record and return ``(text, label)``."""
    where = _where(path, number)
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: expected a non-empty 'messages' list.")
    for message in messages:
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise DataError(f"{where}: every message needs a 'role' and a 'content'.")
    roles = [message["role"] for message in messages]
    if roles != ["user", "assistant"]:
        raise DataError(f"{where}: expected roles ['user', 'assistant'], got {roles}.")
    text, label = messages[0]["content"], messages[1]["content"]
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{where}: the user message is empty.")
    if not isinstance(label, str) or not label.strip():
        raise DataError(f"{where}: the assistant answer is empty.")
    if label not in task.labels:
        raise DataError(f"{where}: answer {label!r} is not a label; labels: {', '.join(task.labels)}.")
    return text, label


def read_training_file(path, task: Task) -> list[tuple[str, str]]:
    """``(text, label)`` once per distinct sentence; copies that disagree are an error naming both lines."""
    rows = [(number, *example_from_record(record, task, path, number)) for number, record in iter_jsonl(path)]
    if not rows:
        raise DataError(f"{path}: no training examples.")
    kept, _ = distinct_examples(rows, path)
    return [rows[position][1:] for position in kept]


# -- the split --------------------------------------------------------------------------------------------
def split_of(text: str, eval_fraction: float = DEFAULT_EVAL_FRACTION, seed: int = DEFAULT_SPLIT_SEED) -> str:
    """'train' or 'eval', from a stable hash of the sentence: the same on every machine, no state file to lose,
    and a sentence that occurs twice always lands on the same side."""
    digest = hashlib.sha256(f"{seed}\x00{text.strip()}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    return "eval" if position < eval_fraction else "train"


def in_split(text: str, split: str, eval_fraction: float, seed: int) -> bool:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split == "all" or split_of(text, eval_fraction, seed) == split


EVAL_FRACTION_HELP = "Fraction of sentences held out for evaluation, chosen by a stable hash of the sentence."
SPLIT_SEED_HELP = "Changes which sentences are held out."


def split_help(default_split: str) -> str:
    return f"Which part of the data to use (default: {default_split}); 'all' ignores the split."


def split_flag(default_split: str):
    """The --split field of a stage's config (its default is the stage's: train for training, eval to evaluate)."""
    return flag(default_split, split_help(default_split), group="data", choices=list(SPLITS))


@dataclass(frozen=True)
class SplitFlags:
    """--eval_fraction and --split_seed, shared by train_sft_trl.py, evaluate.py and benchmark.py so that all of
    them compute the same split; each stage's config adds ``split: str = split_flag(...)``."""

    eval_fraction: float = flag(DEFAULT_EVAL_FRACTION, EVAL_FRACTION_HELP, group="data")
    split_seed: int = flag(DEFAULT_SPLIT_SEED, SPLIT_SEED_HELP, group="data")


def add_split_arguments(parser, default_split: str) -> None:
    """The same split flags on a plain argparse parser (the scripts/ tools)."""
    parser.add_argument("--split", choices=SPLITS, default=default_split, help=split_help(default_split))
    parser.add_argument("--eval_fraction", type=float, default=DEFAULT_EVAL_FRACTION, help=EVAL_FRACTION_HELP)
    parser.add_argument("--split_seed", type=int, default=DEFAULT_SPLIT_SEED, help=SPLIT_SEED_HELP)
