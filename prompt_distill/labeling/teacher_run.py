"""create_data.py's run: the decisions its flags leave open, the teacher engine, and ``run(config)``.

``run`` settles the backend, the token budget and the constrained answer from a ``CreateDataConfig``, builds
``run.LabelingConfig`` for this shard, labels with ``run.run_labeling`` and returns the summary (the script prints
it). What it does on the way (the backend and why, the teacher, vLLM's context) is logged. Ctrl-C ends it with
``LabelingInterrupted``, whose message is the one line that says what is saved and how to resume.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from .. import engines
from ..data import read_sentences
from ..engines import BackendError, EngineSettings, choose_backend, engine_class, engine_spec, registry
from ..engines.flags import engine_flag_settings
from ..models import DEFAULT_CPU_MODEL, is_embedded, load_config, load_tokenizer
from ..preflight import PreflightError, check_flag_ranges
from ..task_source import teacher_task
from ..tracking import JOB_LABEL, run_group, start_run
from .config import CPU_MAX_TOKENS, GPU_MAX_TOKENS, CreateDataConfig
from .context_length import context_length_for, model_context_limit
from .run import CUT_THOUGHT_SAMPLING, LabelingConfig, run_labeling
from .run_files import RunFiles
from .shards import select_shard, selected_count, shard_output_path
from .summary import LabelingSummary
from .tracking import LabelingTracker

logger = logging.getLogger(__name__)


class LabelingInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``run``; its message says what is on disk and the command that resumes."""


def default_max_tokens(backend: str) -> int:
    return GPU_MAX_TOKENS if engine_spec(backend).on_gpu() else CPU_MAX_TOKENS


def run_context_length(config: CreateDataConfig, task, labeling: LabelingConfig) -> int:
    """--max_model_len, or what this process's sentences need; asked by an engine that bounds its context (vLLM).
    Without it vLLM takes the model's whole context (262,144 tokens for the Qwen3 teacher), whose KV cache does not
    fit beside the weights on one 80 GB GPU."""
    if config.max_model_len is not None:
        logger.info(f"vLLM max_model_len {config.max_model_len:,} (--max_model_len)")
        return config.max_model_len
    sentences = read_sentences(labeling.input_file)
    selection = select_shard(range(selected_count(len(sentences.texts), labeling.max_samples)),
                             labeling.shard_index, labeling.num_shards)
    texts = [sentences.texts[index] for index in selection]
    limit = model_context_limit(load_config(config.teacher_model))
    plan = context_length_for(load_tokenizer(config.teacher_model), task, texts, labeling.max_tokens, model_limit=limit)
    logger.info(plan.describe(sentences.line_numbers[selection[plan.longest_index]]))
    return plan.max_model_len


def engine_options(config: CreateDataConfig, backend: str, task=None, labeling: LabelingConfig | None = None) -> dict:
    """The engine's keyword arguments; with ``task`` and ``labeling``, a bounded context is sized for the run."""
    context = (lambda: config.max_model_len) if labeling is None else (
        lambda: run_context_length(config, task, labeling))
    settings = EngineSettings(
        batch_size=config.batch_size, seed=config.seed,
        reasoning_parser=None if config.reasoning_parser == "none" else config.reasoning_parser, context=context,
        tensor_parallel_size=config.tensor_parallel_size, gpu_memory_utilization=config.gpu_memory_utilization,
        max_num_seqs=config.max_num_seqs, **engine_flag_settings(config, backend))
    return engine_class(backend).options(settings)


def cpu_refusal(config: CreateDataConfig, backend: str) -> str | None:
    """--backend auto on a machine without CUDA picks transformers: with a model that is not the small embedded
    one (the 30B default teacher), that would load tens of GB onto the CPU and label for days. Say so instead."""
    if config.backend != "auto" or is_embedded(config.teacher_model) or engine_spec(backend).on_gpu():
        return None
    return (f"--backend auto found no CUDA GPU, so it would load {config.teacher_model} with {backend} on the CPU. "
            f"For the CPU demo pass --teacher_model {DEFAULT_CPU_MODEL}; to really run this model on the CPU pass "
            f"--backend {backend}.")


def make_teacher(config: CreateDataConfig, backend: str, task, labeling: LabelingConfig):
    where = engine_class(backend).describe_loading()
    if where:
        logger.info(f"Loading the teacher {config.teacher_model} with {where}.")
    return engines.make_engine(backend, config.teacher_model, **engine_options(config, backend, task, labeling))


def context_tokens(config: CreateDataConfig, backend: str) -> int | None:
    """The context the teacher will have, read without loading it (a too_long sentence is redone if it grew)."""
    flag = engine_spec(backend).context_flag
    if flag and getattr(config, flag, None) is not None:
        return getattr(config, flag)
    return model_context_limit(load_config(config.teacher_model))


def check_flags(config: CreateDataConfig) -> None:
    """Flag values and combinations argparse cannot refuse by itself; a PreflightError each. The first pre-flight
    check: ``run`` calls it before the backend is chosen and before anything is loaded or written."""
    check_flag_ranges(config)
    if config.retry_unparseable and config.overwrite:
        raise PreflightError("--retry_unparseable redoes part of an existing output and --overwrite replaces it; "
                             "pass one.")
    for name in ("max_samples", "batch_size", "num_samples"):
        value = getattr(config, name)
        if value is not None and value < 1:
            raise PreflightError(f"--{name} must be at least 1, got {value}.")
    if config.num_samples > 1 and config.temperature == 0:
        raise PreflightError(f"--num_samples {config.num_samples} with --temperature 0: greedy decoding gives the same "
                             "answer every time; sample with --temperature > 0, or pass --num_samples 1.")


def labeling_config(config: CreateDataConfig, backend: str) -> LabelingConfig:
    """What the flags leave open, settled for this backend and shard."""
    spec = engine_spec(backend)
    # A strong teacher (vLLM) answers in the asked format, and a free answer keeps its disagreements visible; a
    # small CPU model (transformers) cannot follow a long prompt, so scoring the labels makes it always yield one.
    constrained = (spec.constrained_by_default if config.constrained_answer == "auto"
                   else config.constrained_answer == "on")
    max_tokens = default_max_tokens(backend) if config.max_tokens is None else config.max_tokens
    scores_only = spec.scores_labels and constrained
    if max_tokens < (0 if scores_only else 1):
        scorers = " or ".join(f"--backend {scorer.name}" for scorer in registry.with_capability("scores_labels"))
        raise PreflightError(f"--max_tokens {max_tokens}: the teacher needs at least 1 token to answer (0 works only "
                             f"with {scorers} and --constrained_answer on, which scores the labels).")
    if scores_only and max_tokens == 0 and config.num_samples > 1:
        raise PreflightError(f"--num_samples {config.num_samples} with --max_tokens 0: the labels are scored, not "
                             "sampled, so every answer would be the same; give the teacher tokens to sample "
                             "(--max_tokens 16, say), or pass --num_samples 1.")
    return LabelingConfig(
        input_file=config.input_file,
        output_file=str(shard_output_path(config.output_file, config.shard_index, config.num_shards)),
        model_name=config.teacher_model,
        backend=backend,
        max_tokens=max_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        top_k=config.top_k,
        max_retries=config.max_retries,
        seed=config.seed,
        max_samples=config.max_samples,
        shard_index=config.shard_index,
        num_shards=config.num_shards,
        constrained_answer=constrained,
        cut_thought_sampling=CUT_THOUGHT_SAMPLING if config.cut_thought_sampling == "model_card" else None,
        overwrite=config.overwrite,
        retry_unparseable=config.retry_unparseable,
        num_samples=config.num_samples,
    )


def run(config: CreateDataConfig) -> LabelingSummary:
    """Label this shard's sentences and return the summary (``summary.format_summary`` is the script's report);
    raises a ``PromptDistillError`` for what the user can fix, or ``LabelingInterrupted`` on Ctrl-C."""
    check_flags(config)
    labeling = None
    try:
        task = teacher_task(config.prompt_file, config.labels)  # custom labels need their own prompt
        # Pre-flight, before any tokenizer, config or model loads: the backend, and --tensor_parallel_size against it
        # and the visible GPUs (counted without initialising CUDA).
        choice = choose_backend(config.backend, config.tensor_parallel_size)
        logger.info(choice.line())
        backend = choice.backend
        engine_flag_settings(config, backend)  # pre-flight: the engine flags for this backend (--vllm_engine_kwargs)
        refusal = cpu_refusal(config, backend)
        if refusal:
            raise BackendError(refusal)
        labeling = labeling_config(config, backend)
        logger.info(
            f"Teacher {config.teacher_model} on {backend}; max_tokens {labeling.max_tokens}, temperature "
            f"{labeling.temperature}, constrained answer {'on' if labeling.constrained_answer else 'off'}; "
            f"output {labeling.output_file}"
        )
        # The wandb run starts once the teacher is loaded (or at the end when nothing needed labelling): a run
        # refused before that (a missing input, another model's output, a teacher that cannot load) leaves none.
        tracker = LabelingTracker(lambda: start_labeling_run(config, labeling))
        try:
            # Built only when there is work; on vLLM the context is sized from this run's sentences first.
            summary = run_labeling(labeling, task, lambda: make_teacher(config, backend, task, labeling),
                                   context_tokens=lambda: context_tokens(config, backend), observer=tracker)
        finally:
            if tracker.run:
                tracker.run.finish()
    except KeyboardInterrupt:
        raise LabelingInterrupted(interrupted_line(labeling)) from None
    return summary


def start_labeling_run(config: CreateDataConfig, labeling: LabelingConfig):
    """This process's wandb run (job type label), or None: named after its output, grouped by the final output, so
    the shards of one labelling (Slurm, the 8-GPU script's processes) are parts of one group with training."""
    name = Path(labeling.output_file).name.removesuffix(".jsonl")
    return start_run(config.report_to, JOB_LABEL, name, run_group(config.run_group, config.output_file),
                     {"create_data": asdict(config), "backend": labeling.backend, "max_tokens": labeling.max_tokens,
                      "shard": {"index": config.shard_index, "of": config.num_shards}})


def interrupted_line(labeling: LabelingConfig | None) -> str:
    """One line on Ctrl-C: what is on disk, and the command that resumes (every finished answer is fsynced)."""
    if labeling is None:
        return "Interrupted before labelling started; nothing was written."
    sidecar = RunFiles.for_output(labeling.output_file).sidecar
    saved = sidecar.read_bytes().count(b"\n") if sidecar.is_file() else 0  # whole lines: finished records
    if not saved:
        return "Interrupted; no sentence was finished, so nothing was kept. Run the same command to start again."
    return (f"Interrupted: {saved} finished sentences are saved in {sidecar}. Run the same command again to resume "
            "where it stopped.")
