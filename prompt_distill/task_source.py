"""Where a stage's task comes from: the flags once, then the files the stages write.

create_data.py takes ``--prompt_file`` and ``--labels`` and writes the task into the data's run header
(``NAME.run.json``, key ``task``); train_sft_trl.py reads it from there and writes it into the adapter's
``run_record.json`` (key ``task``, the same entry); evaluate.py, benchmark.py and predict.py read it from the run
record. A later stage given ``--labels`` or ``--prompt_file`` anyway has them checked against the file: the same
values pass, different ones are refused naming both. Only where no earlier file says (hand-made data, a base model
without an adapter) do the flags decide.

The entry (``task_entry``) holds the labels, the prompt's text and the fingerprint of both, so that a later stage
can rebuild the task even where the prompt file is gone; entries written before the prompt was recorded hold the
labels and the fingerprint only, and the prompt is then the built-in one or ``--prompt_file``, checked against the
fingerprint.
"""

from __future__ import annotations

from .errors import DataError, TaskError
from .task import LANGUAGE_LABEL_NAMES, Task, default_prompt_text, language_names, load_task, parse_labels_flag
from .task import read_prompt_file as read_prompt_text

TASK_KEY = "task"


class TaskConflictError(TaskError):
    """--labels or --prompt_file differ from the task a run file or run record holds."""


def task_entry(task: Task) -> dict:
    """The task as the run header and the run record hold it."""
    return {"name": task.name, "fingerprint": task.fingerprint(), "labels": list(task.labels),
            "prompt_file": task.prompt_file, "prompt": task.system_prompt}


def describe(task: Task) -> str:
    return f"labels {','.join(task.labels)}, prompt {task.prompt_file or 'built-in (language ID)'}"


def teacher_task(prompt_file: str | None, labels: str | None) -> Task:
    """The task a teacher is asked, from the flags. ``--labels`` other than the built-in language codes without
    ``--prompt_file`` is refused: the built-in prompt asks for a language code, so the teacher would answer the
    wrong question for the whole run."""
    if prompt_file is None and labels is not None:
        given = parse_labels_flag(labels)
        builtin = tuple(LANGUAGE_LABEL_NAMES)
        if set(given) != set(builtin):
            foreign = [label for label in given if label not in LANGUAGE_LABEL_NAMES]
            consequence = (f"it would never answer {','.join(foreign)}" if foreign else
                           f"every answer outside {','.join(given)} would be unparseable")
            raise TaskError(
                f"--labels {','.join(given)} without --prompt_file: the built-in prompt asks the teacher for one of "
                f"the language codes {','.join(builtin)}, so {consequence}. Pass --prompt_file with a prompt that "
                "asks for your labels and ends in 'Final Answer: <label>' (example-data/feedback_triage/prompt.md "
                "is one)."
            )
    return load_task(prompt_file, labels)


def read_entry(entry, where: str) -> dict:
    """A recorded entry checked for the keys every version wrote (labels, fingerprint)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("labels"), list):
        raise DataError(f"{where}: its '{TASK_KEY}' entry has no list of labels.")
    return entry


def recorded_task(prompt_file: str | None, labels: str | None, entry: dict, where: str) -> Task:
    """The task ``entry`` (read from ``where``) holds; ``--labels``/``--prompt_file``, when given, must be the same.

    Raises ``TaskConflictError`` naming both values when they differ, ``DataError`` when the entry cannot be read.
    """
    entry = read_entry(entry, where)
    recorded_labels = tuple(str(label) for label in entry["labels"])
    fingerprint = entry.get("fingerprint")
    recorded_from = entry.get("prompt_file") or "the built-in prompt"
    if labels is not None:
        given = parse_labels_flag(labels)
        if given != recorded_labels:
            raise TaskConflictError(
                f"--labels {','.join(given)} differs from the labels in {where}: {','.join(recorded_labels)}. "
                f"Drop --labels ({where} gives them), or use the data or adapter made for {','.join(given)}."
            )
    given_prompt = read_prompt_text(prompt_file) if prompt_file is not None else None
    if given_prompt is not None:
        given_fingerprint = _fingerprint(recorded_labels, given_prompt, where)
        expected = fingerprint or (_fingerprint(recorded_labels, entry["prompt"], where) if entry.get("prompt")
                                   else None)
        if expected is not None and given_fingerprint != expected:
            raise TaskConflictError(
                f"--prompt_file {prompt_file} (fingerprint {given_fingerprint}) differs from the prompt in {where} "
                f"({recorded_from}, fingerprint {expected}). Drop --prompt_file ({where} gives it), or use the data "
                "or adapter made with this prompt."
            )
    prompt = entry.get("prompt") or given_prompt
    source = entry.get("prompt_file") if entry.get("prompt") else prompt_file
    if prompt is None:  # an entry written before the prompt was recorded: the built-in one, if it is that
        builtin = default_prompt_text()
        if fingerprint is not None and _fingerprint(recorded_labels, builtin, where) != fingerprint:
            raise TaskError(
                f"{where} records the labels {','.join(recorded_labels)} and the prompt's fingerprint {fingerprint} "
                "but not the prompt (it was written before prompts were recorded), and the built-in prompt is not "
                "it: pass the --prompt_file it was made with."
            )
        prompt = builtin
    task = Task(labels=recorded_labels, system_prompt=prompt, label_names=language_names(recorded_labels),
                name=str(entry.get("name") or "custom"), prompt_file=source)
    if fingerprint is not None and task.fingerprint() != fingerprint:
        raise DataError(f"{where}: its task's prompt and labels do not give its fingerprint {fingerprint}; was it "
                        "edited?")
    return task


def _fingerprint(labels: tuple[str, ...], prompt: str, where: str) -> str:
    try:
        return Task(labels=labels, system_prompt=prompt).fingerprint()
    except TaskError as error:
        raise DataError(f"{where}: its task cannot be used: {error}") from None


def resolve_task(prompt_file: str | None, labels: str | None, entry: dict | None, where: str | None,
                 teacher: bool = False) -> Task:
    """The task a stage runs: ``entry`` (from the file ``where``) when an earlier stage recorded one, checked
    against the flags; else the flags (``teacher``: the task a teacher is asked, see ``teacher_task``)."""
    if entry is not None:
        return recorded_task(prompt_file, labels, entry, where or "the run record")
    return teacher_task(prompt_file, labels) if teacher else load_task(prompt_file, labels)
