"""benchmark.py's flags, each written once: a field of the frozen ``BenchmarkConfig`` with its help and --help
heading (``cli.flag``), parsed by ``cli.parse_config`` (``--config FILE.yaml`` included). ``run`` and everything
below it read this config, never the parsed flags. Also ``BenchmarkError``, the stage's one error.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..cli import flag
from ..data import SplitFlags, split_flag
from ..engines import BACKENDS
from ..engines.flags import EngineFlags
from ..errors import PromptDistillError
from ..evaluation.run import DEFAULT_MODEL_PATH, DEFAULT_TEST_FILE
from ..labeling.run import TEACHER_MAX_TOKENS
from ..models import DEFAULT_CPU_MODEL
from ..task import TaskFlags
from ..tracking import TrackingFlags
from .memory import ALONE_SHARE, LOADINGS, TOGETHER_SHARE

DESCRIPTION = "Teacher (prompt + thinking) vs distilled student: tokens, latency and throughput, with ratios."
DEFAULT_TEACHER = "Qwen/Qwen3-30B-A3B-Thinking-2507"
DEFAULT_OUTPUT_FILE = "./benchmark_results.json"
STUDENT_LATENCY_OUTPUT_FILE = "./student_latency.json"  # --student_latency's results, unless --output_file is given
# Assumed length of the teacher's thought when it cannot be measured (CPU). Conservative on purpose: a thinking
# model usually spends more than this on a 13-way language question, and a longer thought only widens the gap.
DEFAULT_EMULATED_THINKING_TOKENS = 256


class BenchmarkError(PromptDistillError, ValueError):
    """A flag combination the benchmark cannot measure; the message says what to pass."""


@dataclass(frozen=True)
class BenchmarkConfig(TrackingFlags, SplitFlags, TaskFlags, EngineFlags):
    # the two sides
    teacher_model: str | None = flag(
        None, f"Thinking teacher (default: {DEFAULT_TEACHER} on vLLM, {DEFAULT_CPU_MODEL} on transformers).",
        group="model")
    model_path: str = flag(DEFAULT_MODEL_PATH, "The student's LoRA adapter folder.", group="model")
    no_adapter: bool = flag(False, "Benchmark the student's base model alone.", group="model")
    base_model: str | None = flag(None, "Student base model (default: the adapter's own).", group="model")
    # which sentences
    test_file: str = flag(DEFAULT_TEST_FILE, "Sentences, one per line.", group="data")
    max_samples: int = flag(
        8, "The first N sentences of the split: each timed one at a time, per side (as evaluate.py's --max_samples).",
        group="data", aliases=["--num_samples"])
    split: str = split_flag("eval")
    # what is measured
    student_latency: bool = flag(
        False, "Measure the student alone on transformers, 1 thread, batch size 1, adapter merged: greedy generate "
               "vs one-pass classify vs one bare forward pass (the floor), and classify's samples/s batched vs one "
               f"at a time. Results go to --output_file, by default {STUDENT_LATENCY_OUTPUT_FILE} "
               "(student_latency.py).", group="measure")
    batch_size: int = flag(8, "Requests per call in the throughput runs.", group="measure")
    rounds: int = flag(2, "Throughput runs per side, alternating.", group="measure")
    # the teacher's generation
    thinking_tokens: int | None = flag(
        None, "Force the teacher to generate exactly N tokens (emulated thinking). Default: real thinking on vLLM; "
              f"on transformers the median of --teacher_meta_file, else {DEFAULT_EMULATED_THINKING_TOKENS} (an "
              "assumption, printed as such).", group="sampling")
    teacher_meta_file: str | None = flag(
        None, "create_data.py's sidecar (*.meta.jsonl) of a GPU run: its median generated tokens become the "
              "emulated thinking length.", group="sampling")
    teacher_max_tokens: int = flag(
        TEACHER_MAX_TOKENS, "Budget of a real thought and answer (as create_data.py's --max_tokens on a GPU).",
        group="sampling")
    temperature: float = flag(0.15, "Teacher sampling (create_data's default).", group="sampling")
    top_k: int = flag(0, "Teacher sampling: the k most likely tokens only (0 = off; as create_data.py's --top_k).",
                      group="sampling")
    seed: int = flag(0, "Teacher sampling seed (as create_data.py's --seed).", group="sampling")
    # engines
    backend: str = flag("auto", "auto: vLLM if installed and on GPU.", group="engine", choices=list(BACKENDS))
    tensor_parallel_size: int | None = flag(
        None, "GPUs per vLLM engine (default: the smallest of 1, 2, 4, 8 at which each engine's weights and LoRA "
              "buffers fit its --gpu_memory_utilization share of a GPU; the arithmetic is printed).", group="engine")
    gpu_memory_utilization: float | None = flag(  # None: 0.45 each when loaded together, 0.9 when one at a time
        None, f"vLLM share of GPU memory for EACH engine (default: {TOGETHER_SHARE} when both are loaded at once, "
              f"{ALONE_SHARE} when one at a time).", group="engine")
    load_engines: str = flag(
        "auto", "together: both engines loaded at once, their requests alternate (fairest). sequential: the teacher "
                "is loaded, measured and shut down, then the student (one GPU of 80 GB). auto: together when both "
                "fit the GPUs, else sequential; said in one line with the arithmetic.",
        group="engine", choices=list(LOADINGS))
    max_model_len: int | None = flag(
        None, "Teacher's vLLM context length (default: prompt + --teacher_max_tokens, rounded up).", group="engine")
    # where results go. None: the mode's own file (results_file), so that an explicit --output_file is always kept.
    output_file: str | None = flag(
        None, f"Results JSON ('none': not written). (default: {DEFAULT_OUTPUT_FILE})", group="output")
    teacher_samples: int | None = flag(
        None, "Teacher answers per sentence, as create_data.py's --num_samples K: each teacher request is K sampled "
              "answers sent together, counted as K times the tokens (default: the K of --teacher_meta_file's "
              "sidecar, else 1).", group="sampling")

    @property
    def results_file(self) -> str | None:
        """Where the results JSON goes: --output_file as given, else the mode's default; None for 'none'."""
        chosen = self.output_file
        if chosen is None:
            chosen = STUDENT_LATENCY_OUTPUT_FILE if self.student_latency else DEFAULT_OUTPUT_FILE
        return None if chosen.lower() == "none" else chosen
