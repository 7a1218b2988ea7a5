"""The engine that runs the student: the chosen engine with the LoRA adapter (vLLM's LoRA, or transformers + PEFT
with batched left-padded generation), or the merged model when the engine cannot serve the adapter (said, with
the reason)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from pathlib import Path

from .. import engines
from ..engines import EngineSettings, engine_class, engine_spec, select_backend
from ..engines.base import AdapterNotServable
from ..models import load_causal_lm, load_tokenizer
from .check import Student

logger = logging.getLogger(__name__)

MERGED_SUBDIR = "merged"  # where train_sft_trl.py --merge writes the merged model, and where we merge to
# The student sees a sentence and answers with a label: the reference's training max_length is ample, and vLLM's
# default (the model's 262k context) would reserve KV-cache room that one GPU does not have.
DEFAULT_STUDENT_MAX_MODEL_LEN = 2048


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
    settings = EngineSettings(batch_size=batch_size, merge_adapter=merge_adapter,
                              context=lambda: max_model_len or student_max_model_len(student),
                              **{name: value for name, value in more.items() if name in known})
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
