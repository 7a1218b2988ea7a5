"""benchmark.py's run: build both engines on one backend, measure, and return the results; ``report`` is the
table the script prints, ``save_results`` writes the JSON.

``run`` and everything below it read one frozen ``BenchmarkConfig`` (config.py), never the parsed flags. Progress
is logged (``logging``); the table is the report.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable
from pathlib import Path

from .. import engines
from ..data import DEFAULT_EVAL_FRACTION
from ..engines import EngineSettings, choose_backend, engine_class, engine_spec
from ..engines.flags import engine_flag_settings
from ..engines.vllm_lora import read_adapter_config
from ..evaluation.run import STUDENT_MAX_TOKENS, student_params
from ..labeling.run_files import write_json_atomic
from ..models import DEFAULT_CPU_MODEL, resolve_model
from ..preflight import check_flag_ranges
from ..student.check import resolve_student, student_task
from ..student.engine import build_student_engine
from ..task_source import describe
from .config import DEFAULT_TEACHER, BenchmarkConfig, BenchmarkError
from .measure import (
    Contender,
    Measurements,
    build_results,
    choose_thinking,
    describe_machine,
    format_table,
    held_out_texts,
    measure,
    measure_alone,
    teacher_params,
)
from .memory import (
    ALONE_SHARE,
    TOGETHER_SHARE,
    EnginePlan,
    LoraBuffers,
    MemoryPlanError,
    Weights,
    lora_buffers,
    model_config,
    model_weights,
    plan_engines,
    visible_gpus,
)
from .student_latency import RESULTS_FORMAT as LATENCY_FORMAT
from .student_latency import format_latency, measure_student_latency

logger = logging.getLogger(__name__)


def _check_counts(config: BenchmarkConfig) -> None:
    """The first pre-flight check, before the backend is chosen and anything is loaded."""
    for name in ("max_samples", "batch_size", "rounds", "tensor_parallel_size"):
        if getattr(config, name) is not None and getattr(config, name) < 1:
            raise BenchmarkError(f"--{name} must be at least 1, got {getattr(config, name)}.")
    check_flag_ranges(config)  # --temperature, --gpu_memory_utilization: a PreflightError


def teacher_context_length(task, params) -> int:
    """Prompt (a generous bound for the sentence) + generation budget, in vLLM's 256-token blocks of thought."""
    needed = len(task.system_prompt) // 2 + 512 + params.max_tokens  # characters / 2 over-counts tokens
    return -(-needed // 256) * 256


def student_lora_buffers(student, resolved_base: str) -> LoraBuffers | None:
    """vLLM's LoRA buffers for the student's adapter on its base model, or None (said) when the shape is unknown."""
    if not student.adapter_path:
        return None
    found = model_config(resolved_base)
    buffers = lora_buffers(read_adapter_config(student.adapter_path), found) if found else None
    if buffers is None:
        logger.info(f"[benchmark] student {student.base_model}: its config.json is not readable here, so vLLM's LoRA buffers "
            "are not counted in the memory check.")
    return buffers


def vllm_engine_plan(config: BenchmarkConfig, teacher_model: str, student) -> EnginePlan:
    """--tensor_parallel_size and --load_engines checked against the GPUs, or the smallest tensor parallel size at
    which both engines fit together, else one at a time; the arithmetic is printed."""
    sequential = config.load_engines == "sequential"
    unchecked = EnginePlan(config.tensor_parallel_size or 1, config.gpu_memory_utilization
                           or (ALONE_SHARE if sequential else TOGETHER_SHARE), (), sequential)
    gpus = visible_gpus()
    if gpus is None:  # vLLM's CPU backend: no GPU memory to share out
        return unchecked
    engines = []
    for role, model in (("teacher", teacher_model), ("student", student.base_model)):
        resolved = resolve_model(model)
        found = model_weights(model, resolved)
        if found is None:
            logger.info(f"[benchmark] {role} {model}: size of its weights unknown (no local folder or reachable safetensors "
                f"index); GPU memory not checked, tensor parallel {unchecked.tensor_parallel_size}.")
            return unchecked
        size, source = found
        buffers = student_lora_buffers(student, resolved) if role == "student" else None
        engines.append(Weights(f"{role} {model}", size, source, buffers))
    try:
        plan = plan_engines(engines, gpus, config.tensor_parallel_size, config.gpu_memory_utilization,
                            config.load_engines)
    except MemoryPlanError as error:
        raise BenchmarkError(str(error)) from None
    chosen = "" if config.tensor_parallel_size else " (chosen: the smallest that fits)"
    how = "one at a time" if plan.sequential else "both engines loaded together"
    logger.info(f"[benchmark] tensor parallel {plan.tensor_parallel_size}{chosen} on {gpus.count} x {gpus.name}, {how}:")
    for line in plan.lines:
        logger.info(f"[benchmark]   {line}")
    return plan


def release_engine(engine) -> None:
    """Free an engine's GPU memory before the next engine loads: the engine's ``close`` (vLLM's stops its engine
    core; transformers' drops the model), then Python's garbage and torch's allocator cache."""
    engine.close()
    gc.collect()
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def benchmark_student(config: BenchmarkConfig, backend: str):
    """The student's setup (base model, adapter, run record), read before anything loads."""
    no_adapter = config.no_adapter or config.model_path.lower() == "none"
    default_base = DEFAULT_CPU_MODEL if not engine_spec(backend).reference_scale and no_adapter else None
    student = resolve_student(config.model_path, config.base_model or default_base, no_adapter)
    for note in student.notes:
        logger.info(f"[benchmark] {note}")
    return student


def build_contenders(config: BenchmarkConfig, task, backend: str, thinking,
                     texts: list[str], student=None) -> tuple[list[Callable[[], Contender]], bool]:
    """A builder per side (teacher first), and whether to load them one at a time."""
    spec = engine_spec(backend)
    student = student if student is not None else benchmark_student(config, backend)
    params = teacher_params(task, backend, thinking, max_tokens=config.teacher_max_tokens,
                            temperature=config.temperature, seed=config.seed, top_k=config.top_k)
    loading = engine_flag_settings(config, backend)  # --dtype, --quantization ... for both engines
    teacher_model = config.teacher_model or (DEFAULT_TEACHER if spec.reference_scale else DEFAULT_CPU_MODEL)
    placement = {}  # GPUs and memory share of each engine, where one engine spans GPUs
    sequential = config.load_engines == "sequential"
    if spec.tensor_parallel:
        plan = vllm_engine_plan(config, teacher_model, student)
        placement = {"tensor_parallel_size": plan.tensor_parallel_size,
                     "gpu_memory_utilization": plan.gpu_memory_utilization}
        sequential = plan.sequential
    elif sequential:
        logger.info("[benchmark] --load_engines sequential: the teacher is loaded, measured and released, then the student.")

    def teacher() -> Contender:
        settings = EngineSettings(batch_size=config.batch_size, seed=config.seed, reasoning_parser="qwen3",
                                  context=lambda: config.max_model_len or teacher_context_length(task, params),
                                  **placement, **loading)
        engine = engines.make_engine(backend, teacher_model, **engine_class(backend).options(settings))
        prompt_tokens = engine.count_prompt_tokens(task.teacher_messages(texts[0]), params)
        return Contender("teacher", engine, [task.teacher_messages(text) for text in texts], params,
                         f"{teacher_model} on {backend}, the prompt + sentence ({prompt_tokens:,} tokens for the "
                         "first)", answers=thinking.answers)

    def student_side() -> Contender:
        built = build_student_engine(backend, student, config.batch_size, **placement, **loading)
        adapter = f" + {student.adapter_path}" if student.adapter_path else " (no adapter)"
        return Contender("student", built.engine, [student.messages(text) for text in texts],
                         student_params(task, STUDENT_MAX_TOKENS, constrained=False),
                         f"{student.base_model}{adapter}, the sentence alone; {built.description}")

    return [teacher, student_side], sequential


def measure_sides(builders: list[Callable[[], Contender]], sequential: bool, task, config: BenchmarkConfig,
                  samples: int) -> tuple[list[Contender], Measurements]:
    """Both engines loaded and alternating, or one at a time: built, measured, released, then the next."""
    if not sequential:
        contenders = [build() for build in builders]
        return contenders, measure(contenders, task, samples=samples, batch_size=config.batch_size,
                                   rounds=config.rounds)
    measured, contenders = Measurements(batch_size=config.batch_size), []
    for build in builders:
        contender = build()
        measure_alone(contender, task, measured, samples=samples, rounds=config.rounds)
        release_engine(contender.engine)
        contender.engine = None
        logger.info(f"[benchmark] {contender.role} measured and its engine shut down.")
        contenders.append(contender)
    return contenders, measured


def run(config: BenchmarkConfig) -> dict:
    """Measure what ``config`` asks (teacher against student, or --student_latency) and return the results."""
    _check_counts(config)
    if config.student_latency:
        return measure_student_latency(config)
    texts = held_out_texts(config)
    # Pre-flight, before any model is resolved: the backend, and --tensor_parallel_size against it and the GPUs.
    choice = choose_backend(config.backend, config.tensor_parallel_size)
    logger.info(f"[benchmark] {choice.line()}")
    backend = choice.backend
    engine_flag_settings(config, backend)  # pre-flight: the engine flags for this backend (--vllm_engine_kwargs)
    student = benchmark_student(config, backend)
    # Both sides run the adapter's own task (its run record: the teacher gets the prompt the student learned),
    # checked against --labels/--prompt_file; with a base model alone, the flags' (custom labels need a prompt).
    task = student_task(student, config.prompt_file, config.labels, teacher=True)
    logger.info(f"[benchmark] Task: {describe(task)}")
    thinking = choose_thinking(backend, config.thinking_tokens, config.teacher_meta_file, config.teacher_samples)
    logger.info(f"[benchmark] Teacher: {thinking.describe()}")
    builders, sequential = build_contenders(config, task, backend, thinking, texts, student)
    load_before = os.getloadavg()[0]
    contenders, measured = measure_sides(builders, sequential, task, config, len(texts))
    machine = f"{describe_machine(backend)}, load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    split = {"split": config.split, "eval_fraction": config.eval_fraction, "split_seed": config.split_seed}
    if config.split == "eval" and config.eval_fraction == DEFAULT_EVAL_FRACTION:
        split["note"] = "held-out sentences, as evaluate.py uses"
    return build_results(contenders, thinking, measured, {
        "machine": machine, "backend": backend, "samples": len(texts), "rounds": config.rounds,
        "loading": "sequential" if sequential else "together",
        "test_file": str(config.test_file), "split": split})


def report(results: dict) -> str:
    """The table benchmark.py prints: the student's latencies for --student_latency, else teacher vs student."""
    return format_latency(results) if results.get("format") == LATENCY_FORMAT else format_table(results)


def save_results(config: BenchmarkConfig, results: dict) -> Path | None:
    """The results JSON at ``config.results_file`` (--output_file, else the mode's default); None for 'none'."""
    if config.results_file is None:
        return None
    path = Path(config.results_file)
    write_json_atomic(path, results)
    tag = "latency" if config.student_latency else "benchmark"
    logger.info(f"[{tag}] Results: {config.results_file}")
    return path
