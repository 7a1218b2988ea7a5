"""Which student to evaluate, and whether it is evaluated as it was trained.

A LoRA adapter only means something on the base model it was trained on, for the task it was trained on, and on
sentences it has not seen. train_sft_trl.py writes ``run_record.json`` beside the adapter (base model, data file,
split settings, task fingerprint and labels); this module reads it, and PEFT's ``adapter_config.json``, before
any model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..data import DataError, in_split, read_json_object
from ..errors import PromptDistillError
from ..models import is_embedded, resolve_model, unavailable_offline
from ..student_framing import FRAMINGS, USER_ONLY
from ..task import Task
from ..task_source import TASK_KEY, resolve_task
from ..training.examples import load_examples
from ..training.record import RUN_RECORD

DEFAULT_BASE_MODEL = "Qwen/Qwen3-30B-A3B-Instruct-2507"
ADAPTER_CONFIG = "adapter_config.json"
NO_ADAPTER = "none"


class StudentError(PromptDistillError, RuntimeError):
    """The student cannot be evaluated as asked; the message says why and what to pass instead."""


@dataclass
class Student:
    base_model: str
    base_model_source: str  # where base_model came from: the flag, the run record, the adapter config, a default
    adapter_path: str | None = None
    run_record: dict | None = None
    adapter_config: dict | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def framing(self) -> str:
        """The run record's ``student_framing``; the user turn alone for a base model or an older adapter."""
        return (self.run_record or {}).get("student_framing", USER_ONLY)

    def messages(self, text: str) -> list[dict]:
        """The chat the student answers: the framing it was trained with (training and inference share it)."""
        return Task.student_messages(text, self.framing)


def _read_json(path: Path) -> dict:
    try:
        return read_json_object(path)
    except DataError as error:
        raise StudentError(str(error)) from None


def _canonical(name: str) -> str:
    """One spelling per model: the alias and its cache folder, or two spellings of one folder, compare equal."""
    if is_embedded(name):
        name = resolve_model(name)
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def same_model(first: str, second: str) -> bool:
    return first == second or _canonical(first) == _canonical(second)


def resolve_student(model_path: str | None, base_model: str | None, no_adapter: bool = False) -> Student:
    """The base model and adapter to load; every inconsistency is a StudentError before anything loads."""
    if no_adapter or model_path is None or model_path.lower() == NO_ADAPTER:
        return Student(base_model or DEFAULT_BASE_MODEL, "--base_model" if base_model else "default")
    folder = Path(model_path)
    if not folder.exists():
        raise StudentError(
            f"Adapter folder {model_path} does not exist. Train one with "
            f"`python train_sft_trl.py --output_dir {model_path}`, point --model_path at an adapter folder, "
            "or pass --no_adapter to evaluate the base model alone."
        )
    if not (folder / ADAPTER_CONFIG).is_file():
        if (folder / "config.json").is_file():
            raise StudentError(
                f"{model_path} holds a full model, not a LoRA adapter (no {ADAPTER_CONFIG}). "
                f"Evaluate it with --base_model {model_path} --no_adapter."
            )
        raise StudentError(f"{model_path} is not a LoRA adapter folder: {ADAPTER_CONFIG} is missing.")
    adapter_config = _read_json(folder / ADAPTER_CONFIG)
    record = _read_json(folder / RUN_RECORD) if (folder / RUN_RECORD).is_file() else None
    trained_on = [
        (name, source)
        for name, source in (
            ((record or {}).get("base_model"), RUN_RECORD),
            (adapter_config.get("base_model_name_or_path"), f"{ADAPTER_CONFIG} base_model_name_or_path"),
        )
        if name
    ]
    student = Student(DEFAULT_BASE_MODEL, "default", str(folder), record, adapter_config)
    if record is None:
        student.notes.append(
            f"{folder / RUN_RECORD} not found: the task and split the adapter was trained with cannot be checked."
        )
    _check_framing(student, folder / RUN_RECORD)
    if base_model:
        student.base_model, student.base_model_source = base_model, "--base_model"
        if trained_on and not any(same_model(base_model, name) for name, _ in trained_on):
            name, source = trained_on[0]
            if Path(base_model).expanduser().is_dir() and unavailable_offline(name):
                # What the "not available offline" error tells the user to do: a local copy cannot be checked
                # against a hub id, so it is trusted and said.
                student.notes.append(
                    f"The adapter was trained on {name} ({source}), which is not available offline; --base_model "
                    f"{base_model} is taken to be a local copy of it (not checked)."
                )
                return student
            raise StudentError(
                f"The adapter in {model_path} was trained on {name} ({source}), but --base_model is {base_model}. "
                f"A LoRA adapter only works on its own base model: drop --base_model to use {name}."
            )
    elif trained_on:
        student.base_model, student.base_model_source = trained_on[0]
    return student


def student_task(student: Student, prompt_file: str | None, labels: str | None, teacher: bool = False) -> Task:
    """The task of this student: its run record's (labels and prompt, recorded by training), checked against
    --labels/--prompt_file when they are given (a difference is refused, naming both); the flags for a base model
    alone or an adapter without a recorded task. ``teacher``: the task also asks a teacher (benchmark.py), so
    custom labels from the flags need their own prompt."""
    entry = (student.run_record or {}).get(TASK_KEY)
    where = str(Path(student.adapter_path) / RUN_RECORD) if student.adapter_path else None
    return resolve_task(prompt_file, labels, entry, where, teacher=teacher)


def _check_framing(student: Student, record_path: Path) -> None:
    if student.run_record is None or "student_framing" not in student.run_record:
        where = "no run record" if student.run_record is None else f"no student_framing in {record_path}"
        student.notes.append(f"Student framing: {where} (an adapter trained before it was recorded), so the "
                             "sentence is framed as a lone user turn, as training framed it then.")
    elif student.run_record["student_framing"] not in FRAMINGS:
        raise StudentError(f"{record_path}: student_framing {student.run_record['student_framing']!r} is not one of "
                           f"{', '.join(FRAMINGS)}.")


def _trained_texts(record: dict, task: Task) -> set[str] | None:
    """The sentences the adapter was trained on, recomputed from its data file; None when the file is gone."""
    data_file = record.get("data_file")
    split = record.get("split") or {}
    if not data_file or not Path(data_file).is_file():
        return None
    try:
        examples = load_examples(data_file, task)
    except DataError:
        return None
    return {
        example.text.strip()
        for example in examples
        if in_split(example.text, split.get("split", "train"), split["eval_fraction"], split["split_seed"])
    }


def check_training_match(student: Student, task: Task, split, eval_fraction, split_seed, texts) -> list[str]:
    """Warnings about evaluating the adapter on other terms than it was trained on; a label mismatch is an error.

    ``texts`` are the sentences about to be evaluated: when the training data file is still there, the overlap
    with what the adapter was trained on is counted exactly instead of inferred from the split settings.
    """
    record = student.run_record
    if not record:
        return []
    warnings = []
    trained_task = record.get("task") or {}
    labels = trained_task.get("labels")
    if labels is not None and list(labels) != list(task.labels):
        raise StudentError(
            f"The adapter in {student.adapter_path} was trained for the labels {','.join(labels)} ({RUN_RECORD}), "
            f"but this evaluation uses {','.join(task.labels)}. Pass the training task's --labels/--prompt_file."
        )
    if trained_task.get("fingerprint") not in (None, task.fingerprint()):
        warnings.append(
            f"The teacher prompt differs from the one the training data was generated with ({RUN_RECORD} task "
            "fingerprint): the student learned the other prompt's labelling rules."
        )
    trained_split = record.get("split") or {}
    trained_texts = _trained_texts(record, task) if {"eval_fraction", "split_seed"} <= set(trained_split) else None
    if trained_texts is not None:
        seen = sum(text.strip() in trained_texts for text in texts)
        if seen:
            warnings.append(
                f"{seen} of the {len(texts)} evaluated sentences are in the adapter's training data "
                f"({record['data_file']}, split {trained_split.get('split')!r}): those scores measure memory, "
                "not generalisation."
            )
        else:
            student.notes.append(
                f"None of the {len(texts)} evaluated sentences is in the adapter's training data "
                f"(checked against {record['data_file']})."
            )
        return warnings
    if trained_split.get("split") == "all":
        warnings.append("The adapter was trained on every sentence of its data file (--split all): "
                        "sentences evaluated here may have been trained on.")
    elif trained_split and (trained_split.get("eval_fraction"), trained_split.get("split_seed")) != (
        eval_fraction,
        split_seed,
    ):
        warnings.append(
            f"Split settings differ from training (eval_fraction {trained_split.get('eval_fraction')}, split_seed "
            f"{trained_split.get('split_seed')} in {RUN_RECORD}; here {eval_fraction}, {split_seed}): "
            "evaluated sentences may have been trained on."
        )
    if split != "eval":
        warnings.append(f"--split {split} includes sentences of the training split.")
    return warnings
