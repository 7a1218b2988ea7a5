"""The engine that runs the student: the chosen engine with the LoRA adapter (vLLM's LoRA, or transformers + PEFT
with batched left-padded generation), or the merged model when the engine cannot serve the adapter (said, with
the reason); or, with --base_url (the served backend), the student behind a vLLM server, asked by its served name
(``student/serving.py`` prints the ``vllm serve`` command)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from pathlib import Path

from .. import engines
from ..engines import EngineSettings, engine_class, engine_spec, select_backend
from ..engines.base import AdapterNotServable
from ..models import load_causal_lm, load_tokenizer
from ..training.record import MERGED_SUBDIR
from .check import Student, same_model

logger = logging.getLogger(__name__)

# The student sees a sentence and answers with a label: the reference's training max_length is ample, and vLLM's
# default (the model's 262k context) would reserve KV-cache room that one GPU does not have.
DEFAULT_STUDENT_MAX_MODEL_LEN = 2048
SERVED_NAME = "student"  # the model name a served student is asked by: its LoRA module's (or merged model's) name


@dataclass
class StudentEngine:
    engine: object
    description: str  # printed and saved: backend, and what was loaded


def merged_model_dir(student: Student) -> Path:
    """A merged base+adapter model for serving: training's ``--merge`` output if present, else merged now."""
    recorded = (student.run_record or {}).get("merged_model_dir")
    for candidate in (recorded, Path(student.adapter_path) / MERGED_SUBDIR):
        if candidate and (Path(candidate) / "config.json").is_file():
            return Path(candidate)
    target = Path(student.adapter_path) / MERGED_SUBDIR
    logger.info(f"[student] Merging {student.adapter_path} into {student.base_model} -> {target} (once; it needs the "
                "model's full size in CPU memory and on disk) ...")
    from peft import PeftModel  # torch and PEFT load with the model, not with the package

    # The base model's own dtype ("auto"): bf16 for the Qwen3 checkpoints, fp32 for a float32 model, whose merge
    # then serves exactly what PEFT computes.
    base = load_causal_lm(student.base_model, device="cpu", dtype="auto")
    merged = PeftModel.from_pretrained(base, student.adapter_path).merge_and_unload()
    merged.save_pretrained(str(target))
    load_tokenizer(student.base_model).save_pretrained(str(target))
    return target


def student_max_model_len(student: Student) -> int:
    trained = ((student.run_record or {}).get("hyperparameters") or {}).get("max_length")
    return int(trained) if trained else DEFAULT_STUDENT_MAX_MODEL_LEN


def build_student_engine(backend: str, student: Student, batch_size: int, *, merge_adapter: bool = False,
                         **more) -> StudentEngine:
    """``more``: ``EngineSettings`` fields (the benchmark shares the GPUs between teacher and student:
    ``tensor_parallel_size``, ``gpu_memory_utilization``); any other keyword goes to the engine as it is (a test's
    ``dtype`` for vLLM); ``max_model_len`` replaces the context sized from the run record (--max_model_len).
    ``merge_adapter``: fold the LoRA adapter into the weights in memory where the engine can
    (transformers), so a forward pass costs what the bare merged model costs; where PEFT cannot merge it, the
    adapter layers stay and that is logged. An engine that cannot serve the adapter (``AdapterNotServable``)
    serves the merged model instead."""
    chosen = select_backend(backend)
    known = {field.name for field in fields(EngineSettings)}
    more = dict(more)
    max_model_len = more.pop("max_model_len", None)
    served_name = more.pop("served_model_name", None) or SERVED_NAME
    settings = EngineSettings(batch_size=batch_size, merge_adapter=merge_adapter,
                              context=lambda: max_model_len or student_max_model_len(student),
                              **{name: value for name, value in more.items() if name in known})
    if engine_spec(chosen).served:
        return served_student_engine(chosen, student, settings, served_name)
    options = {**engine_class(chosen).options(settings),
               **{name: value for name, value in more.items() if name not in known}}
    try:
        engine = engines.make_engine(chosen, student.base_model, adapter_path=student.adapter_path, **options)
    except AdapterNotServable as why:
        logger.info(f"[student] {why}")
        merged = merged_model_dir(student)
        logger.info(f"[student] Serving the merged model {merged} with {engine_spec(chosen).label} instead.")
        engine = engines.make_engine(chosen, str(merged), **options)
        return StudentEngine(engine, f"{chosen}, merged model {merged} (adapter not servable: {why})")
    for note in engine.notes:
        logger.info(f"[student] {note}")
    return StudentEngine(engine, engine.describe())


def served_student_engine(backend: str, student: Student, settings: EngineSettings, served_name: str) -> StudentEngine:
    """The student behind a server (``settings.base_url``), asked as model ``served_name``. The labels and framing
    stay the run record's; the prompts are tokenized here with the base model's tokenizer, as the in-process
    engines tokenize them (``engines.openai_classify``). What the server says it serves (``/v1/models``: the
    folder and base model of ``served_name``) is compared with the adapter here, and a difference is logged: the
    server may see the same files under other paths."""
    from ..engines.openai_classify import served_models

    engine = engines.make_engine(backend, served_name, **engine_class(backend).options(settings))
    engine.tokenizer = load_tokenizer(student.base_model, trust_remote_code=settings.trust_remote_code)
    card = served_models(engine.client).get(served_name)
    served_from, served_base = getattr(card, "root", None), getattr(card, "parent", None)
    if served_base and not same_model(served_base, student.base_model):
        logger.warning(f"[student] ⚠️  The server's {served_name!r} runs on {served_base}; the adapter "
                       f"{student.adapter_path} was trained on {student.base_model}.")
    if served_base and served_from and student.adapter_path and Path(served_from).exists() \
            and not same_model(served_from, student.adapter_path):
        logger.warning(f"[student] ⚠️  The server's {served_name!r} is the adapter {served_from}, not "
                       f"{student.adapter_path} (whose run record gives the labels and framing here).")
    what = f"adapter {served_from} on {served_base}" if served_base else f"model {served_from}"
    return StudentEngine(engine, f"{backend}: {served_name!r} served at {settings.base_url} ({what})")
