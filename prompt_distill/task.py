"""The classification task, defined once: label set, teacher prompt, chat messages, answer parsing.

The default is language identification over ``ar de el en es fr hi ru tr ur vi zh ot``. A user distills their own
prompt with ``--prompt_file`` (the teacher's system prompt) and ``--labels`` (comma-separated codes).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .cli import flag
from .data import read_lines, read_text
from .errors import TaskError
from .student_framing import framed_messages

UNPARSEABLE = "unparseable"
ANSWER_PREFIX = "Final Answer:"
TEACHER_USER_PREFIX = "Text to classify:\n"

LANGUAGE_LABEL_NAMES = {
    "ar": "Arabic",
    "de": "German",
    "el": "Greek",
    "en": "English",
    "es": "Spanish",
    "fr": "French",
    "hi": "Hindi",
    "ru": "Russian",
    "tr": "Turkish",
    "ur": "Urdu",
    "vi": "Vietnamese",
    "zh": "Chinese",
    "ot": "other",
}

# Decorations a model wraps around a label: markdown, quotes, brackets, punctuation.
_STRIP_CHARS = " \t\r\n*_`'\"“”‘’«»()[]{}<>.,;:!?-–—\\/|#"
# "Final Answer: xx", also "**Final Answer:** xx", "final answer - `xx`", "Final_Answer=xx"; group 1 is the rest
# of that line.
_FINAL_ANSWER_RE = re.compile(r"final[\s_]*answer[\s*_`'\"]*[:=\-–]\s*([^\n]*)", re.IGNORECASE)
_WORD_RE = re.compile(r"\w[\w\-+]*")
_LABEL_RE = re.compile(r"^\w[\w\-+]*$")
_THINK_CLOSE = "</think>"
_THINK_OPEN = "<think>"


@dataclass(frozen=True)
class Task:
    """What the teacher is asked, what the student answers, and how an answer is read."""

    labels: tuple[str, ...]
    system_prompt: str
    label_names: dict[str, str] = field(default_factory=dict)
    name: str = "custom"
    # Where system_prompt was read from (--prompt_file); None for the built-in prompt. Recorded, not compared.
    prompt_file: str | None = field(default=None, compare=False)

    def __post_init__(self):
        if len(self.labels) < 2:
            raise TaskError("A task needs at least two labels.")
        for label in self.labels:
            if not _LABEL_RE.match(label):
                raise TaskError(f"Label {label!r} must be a word: letters, digits, '_', '-' or '+', no spaces.")
            if label.lower() == UNPARSEABLE:
                raise TaskError(f"'{UNPARSEABLE}' is reserved for answers that cannot be read.")
        lowered = [label.lower() for label in self.labels]
        if len(set(lowered)) != len(lowered):
            raise TaskError(f"Labels must be unique (case-insensitively): {', '.join(self.labels)}")
        if not self.system_prompt.strip():
            raise TaskError("The teacher prompt is empty.")

    # -- messages -------------------------------------------------------------------------------------
    def teacher_messages(self, text: str) -> list[dict]:
        """The long rules first (identical for every request, so engines reuse their KV cache), the text last."""
        return [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": TEACHER_USER_PREFIX + text},
        ]

    @staticmethod
    def student_messages(text: str, framing: str = "user_only") -> list[dict]:
        """The student sees the sentence alone: no prompt, no thinking. ``framing`` (student_framing): the user
        turn alone, or after an empty system message where the template would inject a default system turn."""
        return framed_messages(text, framing)

    # -- answers --------------------------------------------------------------------------------------
    def parse(self, raw) -> str:
        """Read a label from a teacher's or student's raw output; ``UNPARSEABLE`` when none. Never raises."""
        try:
            return self._parse(raw)
        except Exception:  # the contract is "never raises": a parser bug must not kill an hour-long run
            return UNPARSEABLE

    def _parse(self, raw) -> str:
        if not isinstance(raw, str):
            return UNPARSEABLE
        answer = strip_thinking(raw)
        if answer is None:
            return UNPARSEABLE
        matches = _FINAL_ANSWER_RE.findall(answer)
        if matches:
            return self._label_in_answer_line(matches[-1])
        # A bare answer, as the student gives it: "en", "EN.", "`fr`", "**de**".
        return self.match_label(answer)

    def _label_in_answer_line(self, line: str) -> str:
        """The first word of the answer line if it is a label, else the only label the line names."""
        words = _WORD_RE.findall(line)
        if not words:
            return UNPARSEABLE
        first = self.match_label(words[0])
        if first != UNPARSEABLE:
            return first
        found = {self.match_label(word) for word in words} - {UNPARSEABLE}
        return found.pop() if len(found) == 1 else UNPARSEABLE

    def match_label(self, candidate: str) -> str:
        cleaned = candidate.strip(_STRIP_CHARS).lower()
        return self._lookup.get(cleaned, UNPARSEABLE)

    @property
    def _lookup(self) -> dict[str, str]:
        table = {name.lower(): code for code, name in self.label_names.items() if code in self.labels}
        table.update({label.lower(): label for label in self.labels})
        return table

    def fingerprint(self) -> str:
        """Changes whenever the prompt or label set changes; recorded next to generated data."""
        digest = hashlib.sha256()
        digest.update(self.system_prompt.encode())
        digest.update(TEACHER_USER_PREFIX.encode())
        digest.update("\x00".join(self.labels).encode())
        return digest.hexdigest()[:16]


def strip_thinking(raw: str) -> str | None:
    """Return the part after the thinking block, or None when the thought never ended.

    Qwen3 thinking-2507 chat templates put ``<think>`` into the prompt, so the output often has only the closing
    tag: everything before the last ``</think>`` is thought. An opening tag without a closing one means the
    output was cut inside the thought (max_tokens), and a label mentioned there is not a committed answer.
    """
    if _THINK_CLOSE in raw:
        return raw.rsplit(_THINK_CLOSE, 1)[1]
    if _THINK_OPEN in raw:
        return None
    return raw


def default_prompt_text() -> str:
    return resources.files("prompt_distill").joinpath("prompts/language_classification.md").read_text("utf-8")


def language_task() -> Task:
    return Task(
        labels=tuple(LANGUAGE_LABEL_NAMES),
        system_prompt=default_prompt_text(),
        label_names=dict(LANGUAGE_LABEL_NAMES),
        name="language",
    )


def parse_labels_flag(value: str) -> tuple[str, ...]:
    """``--labels`` takes ``a,b,c`` (or spaces) or a path to a file with one label per line."""
    path = Path(value)
    items = [line.strip() for line in read_lines(path)] if path.is_file() else re.split(r"[,\s]+", value)
    labels = tuple(item for item in items if item)
    if not labels:
        raise TaskError(f"--labels {value!r} names no labels.")
    return labels


def load_task(prompt_file: str | None = None, labels: str | None = None) -> Task:
    """The task from the shared ``--prompt_file`` / ``--labels`` flags; the language task by default."""
    base = language_task()
    if prompt_file is None and labels is None:
        return base
    system_prompt = base.system_prompt if prompt_file is None else read_prompt_file(prompt_file)
    label_tuple = parse_labels_flag(labels) if labels is not None else base.labels
    return Task(labels=label_tuple, system_prompt=system_prompt, label_names=language_names(label_tuple),
                name="custom", prompt_file=prompt_file)


def read_prompt_file(prompt_file: str) -> str:
    """The text of ``--prompt_file``, which must ask for the answer line the parser reads."""
    path = Path(prompt_file)
    if not path.is_file():
        raise TaskError(f"--prompt_file {prompt_file}: no such file.")
    system_prompt = read_text(path)
    if ANSWER_PREFIX.lower() not in system_prompt.lower():
        raise TaskError(
            f"--prompt_file {prompt_file} never mentions '{ANSWER_PREFIX}'. The answer parser reads the last "
            f"'{ANSWER_PREFIX} <label>' line, so the prompt must ask for it."
        )
    return system_prompt


def language_names(labels) -> dict[str, str]:
    """The language names of those labels that are language codes (the parser also reads "Spanish" as es)."""
    return {code: name for code, name in LANGUAGE_LABEL_NAMES.items() if code in labels}


# Labelling reads the task from these flags; every later stage from what labelling recorded (task_source.py).
RECORDED = ("Training takes it from the data's run file, evaluate/benchmark from the adapter's run record, and "
            "refuse a different value.")
PROMPT_FILE_HELP = f"Teacher system prompt (text file). Default: the built-in language-classification prompt. {RECORDED}"
LABELS_HELP = ("Label codes, comma-separated or a file with one per line. Default: ar,de,el,en,es,fr,hi,ru,tr,ur,vi,zh,ot; "
               f"other labels need their --prompt_file. {RECORDED}")


@dataclass(frozen=True)
class TaskFlags:
    """The task flags every script shares (a stage's config inherits them)."""

    prompt_file: str | None = flag(None, PROMPT_FILE_HELP, group="task")
    labels: str | None = flag(None, LABELS_HELP, group="task")


def add_task_arguments(parser) -> None:
    """The same two flags on a plain argparse parser (the scripts/ tools)."""
    parser.add_argument("--prompt_file", default=None, help=PROMPT_FILE_HELP)
    parser.add_argument("--labels", default=None, help=LABELS_HELP)
