"""create_data.py's flags as one typed, frozen config: what ``labeling.teacher_run.run`` and everything below it read.

Each field is a flag (``cli.flag``: its default, its help and its ``--help`` group), written once, as in TRL's
``SFTConfig``; the script parses them with ``cli.parse_config`` (``--config file.yaml`` included). ``run`` then
settles what the flags leave open (backend, max_tokens, constrained answer, the shard's output) into
``run.LabelingConfig``, the settings the labelling loop itself reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..cli import flag
from ..engines import BACKENDS
from ..engines.flags import EngineFlags
from ..task import TaskFlags
from ..tracking import TrackingFlags
from .run import CUT_THOUGHT_SAMPLING, TEACHER_MAX_TOKENS

# On a CPU the demo model cannot follow the long prompt anyway: 0 scores the labels right after "Final Answer: "
# (as good as letting it write 16 tokens first on a 24-sentence check, and faster).
GPU_MAX_TOKENS = TEACHER_MAX_TOKENS
CPU_MAX_TOKENS = 0


@dataclass(frozen=True)
class CreateDataConfig(TrackingFlags, TaskFlags, EngineFlags):
    # which sentences
    input_file: str = flag("./example-data/multilingual.txt", "Sentences, one per line.", group="data")
    max_samples: int | None = flag(None, "Only the first N sentences of the input.", group="data")
    shard_index: int = flag(0, "Which shard this process labels (0-based).", group="data")
    num_shards: int = flag(1, "Processes sharing the input (round robin).", group="data")
    # the teacher and how it samples
    teacher_model: str = flag(
        "Qwen/Qwen3-30B-A3B-Thinking-2507", "Teacher model: a Hugging Face id, a local folder, or the embedded CPU alias "
        "'smollm2-135m-instruct'.", group="model", aliases=["--model_name"])
    temperature: float = flag(0.15, "Sampling temperature (0 = greedy).", group="sampling")
    top_p: float = flag(
        1.0, "Nucleus sampling: keep the most likely tokens up to this total probability (1 = all).", group="sampling")
    top_k: int = flag(
        0, "Sample among the k most likely tokens only (0 = off; the model's generation_config is not used).",
        group="sampling")
    cut_thought_sampling: str = flag(
        "model_card",
        "Retry a thought cut by --max_tokens with the thinking model card's sampling "
        f"({CUT_THOUGHT_SAMPLING.describe()}), or with the run's own ('same', a new seed).",
        group="sampling", choices=["model_card", "same"],
    )
    max_tokens: int | None = flag(
        None,
        f"Generated tokens per answer, thought included (default: {GPU_MAX_TOKENS} on a GPU, {CPU_MAX_TOKENS} on CPU).",
        group="sampling",
    )
    max_retries: int = flag(3, "Extra attempts for unparseable answers.", group="sampling")
    seed: int = flag(
        0,
        "Sampling seed: each sentence samples from this seed and its position in the input, the same whatever the "
        "batch, shard or resume; a retry adds the attempt number.",
        group="sampling",
    )
    constrained_answer: str = flag(
        "auto", "Force the answer to be a label (auto: off with vLLM, on with transformers).",
        group="sampling", choices=["auto", "on", "off"],
    )
    # engines
    backend: str = flag("auto", "auto: vLLM if installed and on GPU.", group="engine", choices=list(BACKENDS))
    batch_size: int = flag(8, "Requests per batch (transformers backend).", group="engine")
    tensor_parallel_size: int = flag(1, "GPUs per vLLM instance.", group="engine")
    reasoning_parser: str = flag(
        "qwen3", "vLLM reasoning parser for a thinking teacher ('none' for a model that does not think).",
        group="engine")
    max_model_len: int | None = flag(
        None,
        "vLLM context length (default: the longest templated prompt of this run's sentences + --max_tokens + a small "
        "margin, counted with the model's tokenizer).",
        group="engine",
    )
    gpu_memory_utilization: float = flag(0.9, "vLLM share of GPU memory.", group="engine")
    max_num_seqs: int | None = flag(
        None, "vLLM: most requests run at once (default: vLLM's, 256 on a GPU).", group="engine")
    # the output, and an existing one
    output_file: str = flag("./data/prompt_distillation_lang.jsonl", "Training JSONL.", group="output")
    overwrite: bool = flag(False, "Replace an existing output instead of resuming.", group="output")
    retry_unparseable: bool = flag(
        False,
        "On an existing output, redo only the sentences whose answer was unparseable; the rest stays. Unlike a "
        "resume, it may change the sampling flags (--max_tokens for a thought cut short, --temperature, --top_p, "
        "--seed, --cut_thought_sampling), not --backend or --constrained_answer; each redone record names its "
        "session in the run header (.run.json), which keeps the settings. Its attempts continue the sentence's "
        "seeds, so a retry with the same flags samples anew (with --temperature 0 it answers as before).",
        group="output",
    )
    num_samples: int = flag(
        1,
        "Sampled answers per sentence, each with its own seed: the label is their majority (a tie goes to the higher "
        "mean label probability), and the sidecar keeps every sample's label, the votes and the agreement. Needs "
        "--temperature > 0 (and generated tokens, not --max_tokens 0 scoring, on transformers). A sentence is saved "
        "once all its answers are in; the thinking tokens cost K times as much.",
        group="sampling",
    )
