"""The training examples as TRL sees them: validated, split, in prompt/completion form, length-checked.

Why prompt/completion: TRL 1.16 computes the loss on the completion only for a prompt/completion dataset, while a
plain ``messages`` dataset trains on every token, the user's sentence included, without a warning. The prompt is
exactly the student's inference chat (``Task.student_messages``), so the tokens the model is trained to continue
are the tokens it is given at inference.

Why our own length check: TRL truncates sequences to ``max_length`` and then silently drops those left without a
trainable token. An example whose label does not fit completely is useless (or harmful: a label without its
end-of-turn token), so every example longer than ``max_length`` is dropped here, counted and reported by line.

The teacher's distribution: a training record may carry ``"teacher": {"distribution": {label: p}, "confidence": p,
"source": "probabilities"|"votes"}`` (the data contract of issue 23, written by create_data.py when the teacher's
label probabilities or votes are known). ``Example.teacher`` keeps it, in the task's label order, for
``--distillation_target soft`` (training/losses.py) and ``--min_teacher_confidence``; older files have no such key and
train as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data import DataError, example_from_record, in_split, iter_jsonl
from ..duplicates import distinct_examples
from ..preflight import PreflightError
from ..student_framing import USER_ONLY, chat_ids
from ..task import Task
from ..teacher_targets import TEACHER_KEY, TeacherTarget

TEACHER_COLUMN = "teacher_distribution"  # the dataset column the soft loss reads (empty: no teacher target)


@dataclass(frozen=True)
class Example:
    line: int  # line number in the JSONL file, for messages
    text: str
    label: str
    teacher: TeacherTarget | None = None  # the record's "teacher" key; None in files written before it

    def teacher_distribution(self, labels) -> list[float]:
        """The teacher's probabilities in ``labels``' order; empty without a teacher entry."""
        return [self.teacher.distribution.get(label, 0.0) for label in labels] if self.teacher else []


def teacher_from_record(record: dict, task: Task, path, number: int) -> TeacherTarget | None:
    """The record's ``"teacher"`` entry checked against the task's labels (file:line errors), or None without one."""
    entry = record.get(TEACHER_KEY)
    return None if entry is None else TeacherTarget.from_json(entry, task.labels, f"{path}:{number}")


def load_examples(path, task: Task) -> list[Example]:
    """Every record validated (file:line errors) before anything heavy is loaded; one example per sentence."""
    return load_distinct_examples(path, task)[0]


def load_distinct_examples(path, task: Task) -> tuple[list[Example], int]:
    """``(examples, repeats dropped)``: a sentence repeated with the same label is trained once (a copy would
    weigh it twice in the loss); copies with different labels are an error naming both lines (duplicates.py)."""
    examples = []
    for number, record in iter_jsonl(path):
        text, label = example_from_record(record, task, path, number)
        examples.append(Example(number, text, label, teacher_from_record(record, task, path, number)))
    if not examples:
        raise DataError(f"{path}: no training examples.")
    kept, dropped = distinct_examples([(example.line, example.text, example.label) for example in examples], path)
    return [examples[position] for position in kept], dropped


def select_split(examples: list[Example], split: str, eval_fraction: float, seed: int, path="") -> list[Example]:
    if not 0.0 <= eval_fraction < 1.0:
        raise PreflightError(f"--eval_fraction must be in [0, 1), got {eval_fraction}.")
    selected = [example for example in examples if in_split(example.text, split, eval_fraction, seed)]
    if not selected:
        raise DataError(
            f"{path}: none of the {len(examples)} examples falls in split {split!r} "
            f"(eval_fraction={eval_fraction}, split_seed={seed}); use --split all or a smaller --eval_fraction."
        )
    return selected


def prompt_messages(text: str, framing: str = USER_ONLY) -> list[dict]:
    """The student's inference chat under ``framing`` (student_framing.choose_framing picks it per tokenizer and
    the run record keeps it, so inference frames the sentence as training did)."""
    return Task.student_messages(text, framing)


def completion_messages(label: str) -> list[dict]:
    return [{"role": "assistant", "content": label}]


def prompt_completion_record(example: Example, framing: str = USER_ONLY) -> dict:
    return {"prompt": prompt_messages(example.text, framing), "completion": completion_messages(example.label)}


def to_dataset(examples: list[Example], framing: str = USER_ONLY, teacher_labels=None):
    """The prompt/completion dataset TRL tokenizes; with ``teacher_labels`` (soft targets) the
    ``teacher_distribution`` column too, the teacher's probabilities in that label order (an empty list where the
    example has none), which no hard run carries."""
    from datasets import Dataset

    rows = [prompt_completion_record(example, framing) for example in examples]
    if teacher_labels is not None:
        for row, example in zip(rows, examples, strict=True):
            row[TEACHER_COLUMN] = example.teacher_distribution(teacher_labels)
    return Dataset.from_list(rows)


@dataclass(frozen=True)
class ConfidenceFilter:
    """What ``--min_teacher_confidence`` did to the training split."""

    kept: list[Example]
    left_out: list[Example]  # the teacher's confidence below the threshold
    without_teacher: int  # kept examples whose record has no "teacher" key (their confidence is unknown)


def filter_by_confidence(examples: list[Example], threshold: float) -> ConfidenceFilter:
    """Leave out the examples whose teacher confidence is below ``threshold``; those without a teacher entry stay
    (nothing says the teacher was unsure of them) and are counted."""
    kept, left_out = [], []
    for example in examples:
        low = example.teacher is not None and example.teacher.confidence < threshold
        (left_out if low else kept).append(example)
    return ConfidenceFilter(kept, left_out, sum(example.teacher is None for example in kept))


@dataclass(frozen=True)
class Tokenized:
    prompt_tokens: int
    total_tokens: int


def tokenize_lengths(examples: list[Example], tokenizer, path="", framing: str = USER_ONLY) -> list[Tokenized]:
    """Token counts per example; stops if a chat template would train on a context the student never sees.

    The inference prompt (chat template with the generation prompt) must be an exact token prefix of the training
    sequence; otherwise TRL starts the completion where the two diverge and the model learns a different context.
    """
    from tqdm.auto import tqdm

    lengths = []
    for example in tqdm(examples, desc="Checking chat template and lengths", disable=len(examples) < 500):
        prompt = chat_ids(tokenizer, prompt_messages(example.text, framing), add_generation_prompt=True)
        full = chat_ids(tokenizer, prompt_messages(example.text, framing) + completion_messages(example.label),
                         False)
        if full[: len(prompt)] != prompt:
            raise DataError(
                f"{path}:{example.line}: with this tokenizer's chat template the inference prompt is not a prefix "
                "of the training sequence, so the student would be trained on a context it never sees. "
                "Use a chat template that renders the user turn identically with and without the answer."
            )
        lengths.append(Tokenized(len(prompt), len(full)))
    return lengths


@dataclass
class LengthReport:
    kept: list[Example]
    too_long: list[Example]
    longest: int  # tokens of the longest example, kept or not
    kept_tokens: int  # tokens of all kept examples together

    def describe(self, max_length: int | None, path="") -> str:
        if not self.too_long:
            return f"All {len(self.kept)} examples fit max_length={max_length} (longest: {self.longest} tokens)."
        lines = ", ".join(str(example.line) for example in self.too_long[:10])
        more = "" if len(self.too_long) <= 10 else f" and {len(self.too_long) - 10} more"
        return (
            f"Dropped {len(self.too_long)} of {len(self.too_long) + len(self.kept)} examples longer than "
            f"max_length={max_length} tokens (longest: {self.longest}); {path} lines {lines}{more}."
        )


def drop_too_long(examples: list[Example], lengths: list[Tokenized], max_length: int | None) -> LengthReport:
    kept, too_long = [], []
    for example, length in zip(examples, lengths, strict=True):
        (too_long if max_length is not None and length.total_tokens > max_length else kept).append(example)
    kept_tokens = sum(
        length.total_tokens for length in lengths if max_length is None or length.total_tokens <= max_length
    )
    longest = max((length.total_tokens for length in lengths), default=0)
    return LengthReport(kept, too_long, longest, kept_tokens)


def file_sha256(path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
