"""The engine interface shared by create_data.py (teacher), evaluate.py (student) and benchmark.py.

An engine turns a list of chats (lists of ``{"role", "content"}`` messages) into one ``Generation`` each, in
order. Engines batch internally; callers pass whole lists and get results back as batches complete through
``on_batch`` so that progress can be shown and results flushed to disk as they arrive.

A stage says what it wants of its engine in ``EngineSettings`` (no engine's terms); the engine class turns them
into its own keyword arguments (``Engine.options``). What an engine can do is in its ``registry.EngineSpec``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import PromptDistillError


@dataclass(frozen=True)
class GenerationParams:
    """What to generate. Every field is explicit: engines never fall back to a model's hidden defaults."""

    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0  # sample among the k most likely tokens only; 0 or -1 = off
    seed: int | None = None
    # One seed per chat, in order (labelling derives them from the sentence index, so a sentence samples the same
    # way whatever its batch or shard). Engines that cannot seed each request use ``seed`` for the whole call.
    request_seeds: tuple[int, ...] | None = None
    # Constrained answer: the reply must end with ``answer_prefix + one of answer_labels``. With a thinking
    # model the constraint applies after the thought; ``answer_prefix=""`` means the reply is the label alone
    # (the student).
    answer_labels: tuple[str, ...] | None = None
    answer_prefix: str = "Final Answer: "
    # Reads a label from a reply (the task's parser). An engine that answers by scoring the labels (transformers)
    # does so only when this yields no label; without it, only a reply ending in answer_prefix + label counts.
    answer_parser: Callable[[str], str] | None = None
    # Score these labels at the reply's answer position once it is written (a free answer, or the answer after a
    # thought), filling Generation.label_probabilities: one more scoring pass (transformers: per batch) or request
    # (vLLM: prefix-cached) per reply. An answer the engine chose by scoring answer_labels has its probabilities
    # from that same pass, whether or not this is set. None: nothing more is scored.
    score_labels: tuple[str, ...] | None = None
    # Force exactly this many generated tokens (emulated thinking in the CPU benchmark): ignore EOS.
    min_tokens: int = 0
    chat_template_kwargs: dict = field(default_factory=dict)


@dataclass
class Generation:
    """One request's result with the accounting that the sidecar and the benchmark record."""

    text: str  # the reply as the model wrote it; with a thinking model, thought + "</think>" + answer
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop", "length", or "constrained" when the answer was chosen by scoring the labels
    latency_s: float  # seconds from the start of this request's batch to its result
    reasoning: str | None = None  # the thought, when the engine separates it (vLLM's reasoning parser)
    cached_prompt_tokens: int | None = None  # prompt tokens served from a prefix cache
    # The teacher's probability of every label at its answer (renormalised over the labels, summing to 1), from
    # the pass that chose the label or from scoring the labels once the thought closed; None where not scored.
    # They are the distribution the label came from: where transformers chose a constrained answer by scoring,
    # P(answer_prefix + label + end of turn), so that label is their argmax; after a free answer (or a thought),
    # P(label tokens | the reply up to answer_prefix), the end of turn only where a label's tokens begin another's
    # (as classify scores the student: engines.label_tokens).
    label_probabilities: dict[str, float] | None = None
    # What the probabilities cost beyond the answer (0 when they came from the pass that chose the label):
    # scoring requests (vLLM: one per inner node of the labels' token trie; transformers: this row of a batch's
    # pass), the tokens those requests ran over (prefix-cached ones included) and how many of them the prefix
    # cache served, and the seconds this reply waited for them (a batch's pass, or its requests' latency).
    scoring_requests: int = 0
    scoring_prompt_tokens: int = 0
    scoring_cached_tokens: int = 0
    scoring_s: float = 0.0


BatchCallback = Callable[[list[int], list[Generation]], None]


@dataclass
class LabelScores:
    """The student as a classifier: the probability of every label after the assistant turn opens (one pass).

    ``probabilities`` maps each label to P(label tokens | prompt) renormalised over the labels, so they sum to 1.
    """

    probabilities: dict[str, float]
    prompt_tokens: int
    latency_s: float  # seconds from the start of this request's batch to its result

    @property
    def label(self) -> str:
        return max(self.probabilities, key=self.probabilities.__getitem__)  # the first label wins a tie

    @property
    def probability(self) -> float:
        return self.probabilities[self.label]


ScoresCallback = Callable[[list[int], list[LabelScores]], None]


class AdapterNotServable(PromptDistillError, ValueError):
    """A valid adapter that the engine cannot serve (vLLM 0.33: DoRA, say); the message says why. Raised before any
    weights load; the student's engine then serves the merged model instead."""


@dataclass(frozen=True)
class EngineSettings:
    """What a stage asks of its engine, whatever the engine; each engine's ``options`` takes what applies to it.
    The defaults are the project's (create_data.py's flag defaults)."""

    batch_size: int = 8  # requests per forward pass, where the engine batches by a fixed size
    seed: int = 0  # the engine's own seed, where it has one (requests carry theirs in GenerationParams)
    reasoning_parser: str | None = None  # splits a thinking model's thought from its answer (None: no thought)
    # The context length this run needs, asked only by an engine that bounds its context (None: the model's own).
    context: Callable[[], int | None] | None = None
    tensor_parallel_size: int = 1  # GPUs per engine, where one engine spans several
    gpu_memory_utilization: float = 0.9  # share of each GPU's memory, where the engine reserves one
    max_num_seqs: int | None = None  # most requests run at once (None: the engine's default)
    merge_adapter: bool = False  # fold a LoRA adapter into the weights in memory, where the engine can
    # Model loading (engines.flags.EngineFlags: --dtype, --quantization, --enforce_eager, --trust_remote_code).
    dtype: str | None = None  # weights dtype by name ("bfloat16"); None: the engine's own choice
    quantization: str | None = None  # a vLLM quantization method; None: what the model's config names
    enforce_eager: bool = False  # vLLM without CUDA graphs / compilation (vLLM's CPU backend is always eager)
    trust_remote_code: bool = False  # run the model repository's own code
    # More engine arguments by the engine's own names (--vllm_engine_kwargs), already checked against the engine.
    engine_kwargs: dict = field(default_factory=dict)


class Engine(Protocol):
    """What the stages use of an engine. ``registry.ENGINES`` names each class; tests/engines/test_registry.py
    checks that every registered class has all of it."""

    name: str  # its registry name
    tokenizer: Any  # the model's tokenizer (chat template, token counts)
    max_context_tokens: int | None  # prompt + reply tokens the model takes (None: unknown, not checked)
    notes: list[str]  # what did not go as asked (an adapter that could not be merged, say); the caller logs them

    @classmethod
    def options(cls, settings: EngineSettings) -> dict:
        """The keyword arguments (after the model) that make this engine as ``settings`` ask."""
        ...

    @classmethod
    def describe_loading(cls) -> str | None:
        """Where a model will load, said before loading it ("transformers on cpu"); None where the engine reports
        its own loading."""
        ...

    def describe(self) -> str:
        """What was loaded, as results record it ("vllm with the LoRA adapter")."""
        ...

    def close(self) -> None:
        """Free the memory the engine holds (GPU included), before another engine loads; the engine is unusable
        after."""
        ...

    def generate(
        self,
        chats: list[list[dict]],
        params: GenerationParams,
        on_batch: BatchCallback | None = None,
    ) -> list[Generation]:
        """Generate one reply per chat, in order; call ``on_batch(indices, generations)`` as batches finish."""
        ...

    def count_prompt_tokens(self, chat: list[dict], params: GenerationParams) -> int:
        """Tokens of the templated prompt, as the engine would send it."""
        ...

    def classify(
        self, chats: list[list[dict]], labels: tuple[str, ...], on_batch: ScoresCallback | None = None
    ) -> list[LabelScores]:
        """Score every label as the reply to each chat (no generation loop); results in order."""
        ...
