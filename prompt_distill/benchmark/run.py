"""benchmark.py's flags and run: build both engines on one backend, measure, print the table, write the JSON.

``run`` and everything below it read one frozen ``BenchmarkConfig`` (config.py), never the parsed flags.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from pathlib import Path

from ..data import DEFAULT_EVAL_FRACTION, add_split_arguments, in_split, read_sentences
from ..engines import BACKENDS, choose_backend, make_engine
from ..engines.vllm_lora import read_adapter_config
from ..errors import PromptDistillError
from ..evaluation.run import DEFAULT_MODEL_PATH, DEFAULT_TEST_FILE, STUDENT_MAX_TOKENS, student_params
from ..labeling.run import TEACHER_MAX_TOKENS
from ..labeling.run_files import write_json_atomic
from ..models import DEFAULT_CPU_MODEL, resolve_model
from ..preflight import check_flag_ranges
from ..student.check import resolve_student
from ..student.engine import build_student_engine
from ..task import add_task_arguments, load_task
from .config import BenchmarkConfig
from .measure import (
    DEFAULT_EMULATED_THINKING_TOKENS,
    Contender,
    Measurements,
    build_results,
    choose_thinking,
    describe_machine,
    format_table,
    measure,
    measure_alone,
    teacher_params,
)
from .memory import (
    ALONE_SHARE,
    LOADINGS,
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

DEFAULT_TEACHER = "Qwen/Qwen3-30B-A3B-Thinking-2507"
DEFAULT_OUTPUT_FILE = "./benchmark_results.json"


class BenchmarkError(PromptDistillError, ValueError):
    """A flag combination the benchmark cannot measure; the message says what to pass."""


def add_arguments(parser) -> None:
    parser.add_argument("--teacher_model", default=None,
                        help=f"Thinking teacher (default: {DEFAULT_TEACHER} on vLLM, {DEFAULT_CPU_MODEL} on "
                             "transformers).")
    parser.add_argument("--model_path", default=DEFAULT_MODEL_PATH, help="The student's LoRA adapter folder.")
    parser.add_argument("--no_adapter", action="store_true", help="Benchmark the student's base model alone.")
    parser.add_argument("--base_model", default=None, help="Student base model (default: the adapter's own).")
    parser.add_argument("--test_file", default=DEFAULT_TEST_FILE, help="Sentences, one per line.")
    parser.add_argument("--num_samples", "--max_samples", dest="num_samples", type=int, default=8,
                        help="Sentences timed one at a time, per side.")
    parser.add_argument("--student_latency", action="store_true",
                        help="Measure the student alone on transformers, 1 thread, batch size 1, adapter merged: "
                             "greedy generate vs one-pass classify vs one bare forward pass (the floor), and "
                             "classify's samples/s batched vs one at a time. Results go to --output_file, by "
                             "default ./student_latency.json (student_latency.py).")
    parser.add_argument("--batch_size", type=int, default=8, help="Requests per call in the throughput runs.")
    parser.add_argument("--rounds", type=int, default=2, help="Throughput runs per side, alternating.")
    parser.add_argument("--thinking_tokens", type=int, default=None,
                        help="Force the teacher to generate exactly N tokens (emulated thinking). Default: real "
                             "thinking on vLLM; on transformers the median of --teacher_meta_file, else "
                             f"{DEFAULT_EMULATED_THINKING_TOKENS} (an assumption, printed as such).")
    parser.add_argument("--teacher_meta_file", default=None,
                        help="create_data.py's sidecar (*.meta.jsonl) of a GPU run: its median generated tokens "
                             "become the emulated thinking length.")
    parser.add_argument("--teacher_max_tokens", type=int, default=TEACHER_MAX_TOKENS,
                        help="Budget of a real thought and answer (as create_data.py's --max_tokens on a GPU).")
    parser.add_argument("--temperature", type=float, default=0.15, help="Teacher sampling (create_data's default).")
    parser.add_argument("--seed", type=int, default=0, help="Teacher sampling seed (as create_data.py's --seed).")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="auto: vLLM if installed and on GPU.")
    parser.add_argument("--tensor_parallel_size", type=int, default=None,
                        help="GPUs per vLLM engine (default: the smallest of 1, 2, 4, 8 at which each engine's weights "
                             "and LoRA buffers fit its --gpu_memory_utilization share of a GPU; the arithmetic is printed).")
    parser.add_argument("--gpu_memory_utilization", type=float, default=None,
                        help=f"vLLM share of GPU memory for EACH engine (default: {TOGETHER_SHARE} when both are "
                             f"loaded at once, {ALONE_SHARE} when one at a time).")
    parser.add_argument("--load_engines", choices=LOADINGS, default="auto",
                        help="together: both engines loaded at once, their requests alternate (fairest). "
                             "sequential: the teacher is loaded, measured and shut down, then the student (one "
                             "GPU of 80 GB). auto: together when both fit the GPUs, else sequential; said in one "
                             "line with the arithmetic.")
    parser.add_argument("--max_model_len", type=int, default=None,
                        help="Teacher's vLLM context length (default: prompt + --teacher_max_tokens, rounded up).")
    parser.add_argument("--output_file", default=DEFAULT_OUTPUT_FILE, help="Results JSON ('none': not written).")
    add_split_arguments(parser, default_split="eval")
    add_task_arguments(parser)


def held_out_texts(config: BenchmarkConfig) -> list[str]:
    texts = [text for text in read_sentences(config.test_file).texts
             if in_split(text, config.split, config.eval_fraction, config.split_seed)]
    if len(texts) < max(config.num_samples, 2):
        raise BenchmarkError(f"{config.test_file}: {len(texts)} sentences in split {config.split!r}, "
                             f"--num_samples {config.num_samples} asked (at least 2 are needed).")
    return texts[: config.num_samples]


def _check_counts(config: BenchmarkConfig) -> None:
    """The first pre-flight check, before the backend is chosen and anything is loaded."""
    for name in ("num_samples", "batch_size", "rounds", "tensor_parallel_size"):
        if getattr(config, name) is not None and getattr(config, name) < 1:
            raise BenchmarkError(f"--{name} must be at least 1, got {getattr(config, name)}.")
    check_flag_ranges(config)  # --temperature, --gpu_memory_utilization: a PreflightError


def teacher_context_length(task, params) -> int:
    """Prompt (a generous bound for the sentence) + generation budget, in vLLM's 256-token blocks of thought."""
    needed = len(task.system_prompt) // 2 + 512 + params.max_tokens  # characters / 2 over-counts tokens
    return -(-needed // 256) * 256


def student_lora_buffers(student, resolved_base: str, out=print) -> LoraBuffers | None:
    """vLLM's LoRA buffers for the student's adapter on its base model, or None (said) when the shape is unknown."""
    if not student.adapter_path:
        return None
    found = model_config(resolved_base)
    buffers = lora_buffers(read_adapter_config(student.adapter_path), found) if found else None
    if buffers is None:
        out(f"[benchmark] student {student.base_model}: its config.json is not readable here, so vLLM's LoRA buffers "
            "are not counted in the memory check.")
    return buffers


def vllm_engine_plan(config: BenchmarkConfig, teacher_model: str, student, out=print) -> EnginePlan:
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
            out(f"[benchmark] {role} {model}: size of its weights unknown (no local folder or reachable safetensors "
                f"index); GPU memory not checked, tensor parallel {unchecked.tensor_parallel_size}.")
            return unchecked
        size, source = found
        buffers = student_lora_buffers(student, resolved, out) if role == "student" else None
        engines.append(Weights(f"{role} {model}", size, source, buffers))
    try:
        plan = plan_engines(engines, gpus, config.tensor_parallel_size, config.gpu_memory_utilization,
                            config.load_engines)
    except MemoryPlanError as error:
        raise BenchmarkError(str(error)) from None
    chosen = "" if config.tensor_parallel_size else " (chosen: the smallest that fits)"
    how = "one at a time" if plan.sequential else "both engines loaded together"
    out(f"[benchmark] tensor parallel {plan.tensor_parallel_size}{chosen} on {gpus.count} x {gpus.name}, {how}:")
    for line in plan.lines:
        out(f"[benchmark]   {line}")
    return plan


def release_engine(engine) -> None:
    """Free an engine's GPU memory before the next engine loads.

    vLLM 0.33's ``LLM`` has no close(). Its engine core (the scheduler and the model's workers, in a child process
    by default) is stopped by ``llm.llm_engine.engine_core.shutdown()`` (v1/engine/core_client.py), which frees
    the weights, LoRA buffers and KV cache it held; ``cleanup_dist_env_and_memory()``
    (distributed/parallel_state.py, what vLLM's own tests call between engines) then destroys this process's
    model-parallel groups and empties the allocator caches. A transformers engine is released by dropping it."""
    llm = getattr(engine, "llm", None)
    if llm is not None:
        llm.llm_engine.engine_core.shutdown()
        engine.llm = None
        del llm
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        cleanup_dist_env_and_memory()
    elif hasattr(engine, "model"):
        engine.model = None
    gc.collect()
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def build_contenders(config: BenchmarkConfig, task, backend: str, thinking, texts: list[str],
                     out=print) -> tuple[list[Callable[[], Contender]], bool]:
    """A builder per side (teacher first), and whether to load them one at a time."""
    no_adapter = config.no_adapter or config.model_path.lower() == "none"
    default_base = DEFAULT_CPU_MODEL if backend == "transformers" and no_adapter else None
    student = resolve_student(config.model_path, config.base_model or default_base, no_adapter)
    for note in student.notes:
        out(f"[benchmark] {note}")
    params = teacher_params(task, backend, thinking, max_tokens=config.teacher_max_tokens,
                            temperature=config.temperature, seed=config.seed)
    teacher_model = config.teacher_model or (DEFAULT_TEACHER if backend == "vllm" else DEFAULT_CPU_MODEL)
    vllm_options = {}
    sequential = config.load_engines == "sequential"
    if backend == "vllm":
        plan = vllm_engine_plan(config, teacher_model, student, out)
        vllm_options = {"tensor_parallel_size": plan.tensor_parallel_size,
                        "gpu_memory_utilization": plan.gpu_memory_utilization}
        sequential = plan.sequential
    elif sequential:
        out("[benchmark] --load_engines sequential: the teacher is loaded, measured and released, then the student.")

    def teacher() -> Contender:
        if backend == "vllm":
            engine = make_engine(backend, teacher_model, seed=config.seed, reasoning_parser="qwen3",
                                 max_model_len=config.max_model_len or teacher_context_length(task, params),
                                 **vllm_options)
        else:
            engine = make_engine(backend, teacher_model, batch_size=config.batch_size)
        prompt_tokens = engine.count_prompt_tokens(task.teacher_messages(texts[0]), params)
        return Contender("teacher", engine, [task.teacher_messages(text) for text in texts], params,
                         f"{teacher_model} on {backend}, the prompt + sentence ({prompt_tokens:,} tokens for the "
                         "first)")

    def student_side() -> Contender:
        built = build_student_engine(backend, student, config.batch_size, out, **vllm_options)
        adapter = f" + {student.adapter_path}" if student.adapter_path else " (no adapter)"
        return Contender("student", built.engine, [student.messages(text) for text in texts],
                         student_params(task, STUDENT_MAX_TOKENS, constrained=False),
                         f"{student.base_model}{adapter}, the sentence alone; {built.description}")

    return [teacher, student_side], sequential


def measure_sides(builders: list[Callable[[], Contender]], sequential: bool, task, config: BenchmarkConfig,
                  samples: int, out=print) -> tuple[list[Contender], Measurements]:
    """Both engines loaded and alternating, or one at a time: built, measured, released, then the next."""
    if not sequential:
        contenders = [build() for build in builders]
        return contenders, measure(contenders, task, samples=samples, batch_size=config.batch_size,
                                   rounds=config.rounds, log=out)
    measured, contenders = Measurements(batch_size=config.batch_size), []
    for build in builders:
        contender = build()
        measure_alone(contender, task, measured, samples=samples, rounds=config.rounds, log=out)
        release_engine(contender.engine)
        contender.engine = None
        out(f"[benchmark] {contender.role} measured and its engine shut down.")
        contenders.append(contender)
    return contenders, measured


def run(config: BenchmarkConfig, out=print) -> dict:
    _check_counts(config)
    if config.student_latency:
        from .student_latency import measure_student_latency

        return measure_student_latency(config, out)
    task = load_task(config.prompt_file, config.labels)
    texts = held_out_texts(config)
    # Pre-flight, before any model is resolved: the backend, and --tensor_parallel_size against it and the GPUs.
    choice = choose_backend(config.backend, config.tensor_parallel_size)
    out(f"[benchmark] {choice.line()}")
    backend = choice.backend
    thinking = choose_thinking(backend, config.thinking_tokens, config.teacher_meta_file)
    out(f"[benchmark] Teacher: {thinking.describe()}")
    builders, sequential = build_contenders(config, task, backend, thinking, texts, out)
    load_before = os.getloadavg()[0]
    contenders, measured = measure_sides(builders, sequential, task, config, len(texts), out)
    machine = f"{describe_machine(backend)}, load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    split = {"split": config.split, "eval_fraction": config.eval_fraction, "split_seed": config.split_seed}
    if config.split == "eval" and config.eval_fraction == DEFAULT_EVAL_FRACTION:
        split["note"] = "held-out sentences, as evaluate.py uses"
    results = build_results(contenders, thinking, measured, {
        "machine": machine, "backend": backend, "samples": len(texts), "rounds": config.rounds,
        "loading": "sequential" if sequential else "together",
        "test_file": str(config.test_file), "split": split})
    out(format_table(results))
    if config.output_file.lower() != "none":
        write_json_atomic(Path(config.output_file), results)
        out(f"[benchmark] Results: {config.output_file}")
    return results
