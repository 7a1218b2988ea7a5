"""The trained student as a classifier, for use in production: ``Student.load(path).classify(texts)``.

The adapter's own task comes from the ``run_record.json`` that train_sft_trl.py writes beside it: its labels and
the chat framing it was trained with. A caller therefore cannot pair an adapter with another task's labels; only
an adapter without a run record takes labels from the caller, and then the caller must name them.

Each text is scored in one forward pass (``Engine.classify``): every label gets a probability, and they sum to 1.
predict.py is a thin command line over this module, so the CLI and the API give the same answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..engines.flags import DEFAULT_MAX_CONCURRENT_REQUESTS, EngineFlags, student_engine_options
from ..preflight import check_flag_ranges
from ..task import Task, TaskError

# student.check's ``Student`` is the *resolved setup* of a student (base model, adapter folder, run record): it is
# imported here as ``StudentSetup`` so that ``Student`` in this module, and ``prompt_distill.Student``, always means
# the public classifier below and never that internal record.
from .check import ADAPTER_CONFIG, RUN_RECORD, StudentError, resolve_student
from .check import Student as StudentSetup
from .engine import SERVED_NAME, build_student_engine
from .serving import StudentFlags, choose_student_backend

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 32
PredictionsCallback = Callable[[list[int], list["Prediction"]], None]


class BlankTextError(StudentError, ValueError):
    """``Student.classify`` was given a blank text: no label describes it."""


@dataclass(frozen=True)
class Prediction:
    """One text's answer: the most probable label, its probability, and every label's probability."""

    text: str
    label: str
    probability: float
    probabilities: dict[str, float]

    def to_record(self, all_probabilities: bool = False) -> dict:
        """The JSON object predict.py prints for this text."""
        record = {"text": self.text, "label": self.label, "probability": self.probability}
        if all_probabilities:
            record["probabilities"] = dict(self.probabilities)
        return record


def _check_labels(labels: Iterable[str], where: str) -> tuple[str, ...]:
    labels = tuple(labels)
    try:
        # Task's own checks (two or more, unique, one word each); the prompt is a placeholder: none is used here.
        Task(labels=labels, system_prompt="unused")
    except TaskError as error:
        raise StudentError(f"{where}: {error}") from None
    return labels


def task_labels(setup: StudentSetup, labels: Iterable[str] | None) -> tuple[str, ...]:
    """The labels the adapter was trained for; ``labels`` only stands in for a run record that is missing."""
    record_file = Path(setup.adapter_path) / RUN_RECORD
    recorded = ((setup.run_record or {}).get("task") or {}).get("labels")
    if recorded is None:
        if labels is None:
            reason = "not found" if setup.run_record is None else "has no task labels"
            raise StudentError(
                f"{record_file} {reason}, so the labels this adapter answers with are unknown. Pass the labels it "
                "was trained with: --labels A,B,C (Python: Student.load(path, labels=[...]))."
            )
        return _check_labels(labels, "--labels")
    recorded = _check_labels(recorded, f"{record_file} task labels")
    if labels is not None and tuple(labels) != recorded:
        raise StudentError(
            f"The adapter in {setup.adapter_path} was trained for the labels {','.join(recorded)} ({RUN_RECORD}); "
            f"drop --labels {','.join(labels)}: the run record decides the labels."
        )
    return recorded


def resolve_adapter(path, base_model: str | None = None) -> StudentSetup:
    """The adapter folder checked before any model loads; errors say what to pass instead."""
    folder = Path(path)
    if not folder.is_dir():
        raise StudentError(
            f"Adapter folder {path} does not exist: pass the --output_dir of train_sft_trl.py "
            f"(e.g. `python train_sft_trl.py --output_dir {path}` makes one)."
        )
    if not (folder / ADAPTER_CONFIG).is_file():
        raise StudentError(
            f"{path} is not a LoRA adapter folder ({ADAPTER_CONFIG} is missing): pass the --output_dir of "
            "train_sft_trl.py."
        )
    return resolve_student(str(folder), base_model)


class Student:
    """A trained student (LoRA adapter on its base model) that labels texts. Make one with ``Student.load``."""

    def __init__(self, setup: StudentSetup, engine, labels: tuple[str, ...], description: str):
        self.setup, self.engine, self.labels, self.description = setup, engine, labels, description

    @classmethod
    def load(
        cls,
        path,
        backend: str = "auto",
        batch_size: int = DEFAULT_BATCH_SIZE,
        base_model: str | None = None,
        labels: Iterable[str] | None = None,
        engine_flags: EngineFlags | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_concurrent_requests: int = DEFAULT_MAX_CONCURRENT_REQUESTS,
        served_model_name: str = SERVED_NAME,
    ) -> Student:
        """Load the adapter in ``path`` on the base model its run record names (or ``base_model``, a local copy).

        ``backend``: "vllm" (GPU), "transformers", or "auto" (vLLM when installed and a GPU is present).
        ``labels``: only for an adapter without a run record. ``engine_flags``: how the engine loads the model
        (``EngineFlags(dtype="bfloat16", vllm_engine_kwargs={...})``; predict.py passes its config). Notes (the backend, the framing) are logged at INFO
        on the ``prompt_distill`` logger.
        ``base_url``: the student is behind a vLLM server there (``vllm serve BASE --enable-lora --lora-modules
        student=ADAPTER``, see ``student.serving``) and classifies through it, ``max_concurrent_requests`` at a
        time, asked as ``served_model_name``; ``path`` still gives the labels, framing and base model (its
        tokenizer). ``api_key``: the server's (default: $OPENAI_API_KEY).
        Raises ``StudentError`` or ``engines.BackendError`` (their message says what to pass instead) before any
        model loads, and ``ModelNotFoundError`` when the base model is not available.
        """
        if batch_size < 1:
            raise StudentError(f"batch_size must be at least 1; got {batch_size}.")
        if base_url is not None:  # the Python API's server arguments, as the flags would give them
            kept = {name: getattr(engine_flags, name) for name in EngineFlags.__dataclass_fields__} if engine_flags \
                else {}
            engine_flags = StudentFlags(**kept, base_url=base_url, api_key=api_key,
                                        max_concurrent_requests=max_concurrent_requests,
                                        served_model_name=served_model_name)
        choice = choose_student_backend(backend, engine_flags)  # pre-flight: before the adapter is resolved
        if engine_flags:
            check_flag_ranges(engine_flags)  # --gpu_memory_utilization
        engine_options = student_engine_options(engine_flags, choice.backend) if engine_flags else {}
        setup = resolve_adapter(path, base_model)
        task = task_labels(setup, labels)
        for note in [*setup.notes, choice.line()]:  # said once the adapter is accepted: a refusal stays one line
            logger.info(f"[predict] {note}")
        built = build_student_engine(choice.backend, setup, batch_size, **engine_options,
                                     served_model_name=getattr(engine_flags, "served_model_name", None))
        return cls(setup, built.engine, task, built.description)

    def classify(self, texts: Iterable[str], on_batch: PredictionsCallback | None = None) -> list[Prediction]:
        """One ``Prediction`` per text, in order. ``on_batch(indices, predictions)`` is called as batches finish
        (in the engine's order, which may differ from the input's).

        Each text is stripped of surrounding whitespace before the student sees it, as evaluate.py does; a blank
        text is refused, since no label describes it.
        """
        if isinstance(texts, str):
            raise TypeError("classify takes a list of texts; for one text, pass [text].")
        texts = list(texts)
        blank = [index for index, text in enumerate(texts) if not text.strip()]
        if blank:
            shown = ", ".join(str(index) for index in blank[:10]) + (" ..." if len(blank) > 10 else "")
            raise BlankTextError(f"{len(blank)} blank text(s) at position(s) {shown}: a blank text has no label.")
        if not texts:
            return []
        chats = [self.setup.messages(text.strip()) for text in texts]

        def predictions(indices, scores) -> list[Prediction]:
            return [
                Prediction(texts[index], score.label, score.probability, dict(score.probabilities))
                for index, score in zip(indices, scores, strict=True)
            ]

        forward = None if on_batch is None else (lambda indices, scores: on_batch(indices, predictions(indices, scores)))
        scores = self.engine.classify(chats, self.labels, on_batch=forward)
        return predictions(range(len(texts)), scores)

    def __repr__(self) -> str:
        return f"Student({self.setup.adapter_path!r}, labels={list(self.labels)}, {self.description})"
