"""The engine that runs the student: vLLM with the LoRA adapter, or the merged model when vLLM cannot serve the
adapter (said, with the reason), or transformers + PEFT with batched left-padded generation."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..engines import make_engine, select_backend
from ..engines.vllm_lora import AdapterNotServable
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
                         **vllm_options) -> StudentEngine:
    """``vllm_options``: more ``vllm.LLM`` arguments (the benchmark shares a GPU between teacher and student).
    ``merge_adapter`` (transformers): fold the LoRA adapter into the weights in memory, so a forward pass costs
    what the bare merged model costs; where PEFT cannot merge it, the adapter layers stay and that is logged."""
    chosen = select_backend(backend)
    if chosen == "transformers":
        engine = make_engine(chosen, student.base_model, adapter_path=student.adapter_path, batch_size=batch_size,
                             merge_adapter=merge_adapter)
        for note in engine.notes:
            logger.info(f"[student] {note}")
        adapter = "without adapter"
        if student.adapter_path:
            merged = merge_adapter and not engine.notes
            adapter = "with the LoRA adapter " + ("merged into the weights" if merged else "(PEFT)")
        return StudentEngine(engine, f"transformers on {engine.device}, batch size {batch_size}, {adapter}")
    max_model_len = student_max_model_len(student)
    if student.adapter_path is None:
        engine = make_engine(chosen, student.base_model, max_model_len=max_model_len, **vllm_options)
        return StudentEngine(engine, "vllm, base model without adapter")
    try:
        engine = make_engine(chosen, student.base_model, adapter_path=student.adapter_path,
                             max_model_len=max_model_len, **vllm_options)
        return StudentEngine(engine, "vllm with the LoRA adapter")
    except AdapterNotServable as why:
        logger.info(f"[student] {why}")
        merged = merged_model_dir(student)
        logger.info(f"[student] Serving the merged model {merged} with vLLM instead.")
        engine = make_engine(chosen, str(merged), max_model_len=max_model_len, **vllm_options)
        return StudentEngine(engine, f"vllm, merged model {merged} (adapter not servable: {why})")
