"""The vLLM engine (GPU): offline ``LLM.chat`` over whole lists of conversations.

Three pure pieces keep the engine call thin and each one testable against the real vllm package without a GPU:
``build_llm_kwargs`` (what the engine is built with), ``build_sampling_params`` (what each request asks for) and
``to_generation`` (what comes back). ``VLLMEngine`` only wires them together.

* Teacher (a thinking model): ``reasoning_parser="qwen3"``. With it vLLM applies a structured-output constraint
  (the optional constrained final answer) only after ``</think>``; without it the constraint would bind from the
  first token and kill the thinking, and ``thinking_token_budget`` would be rejected.
* Student: base model + LoRA adapter (settings from ``vllm_lora.vllm_lora_settings``), the sentence alone.
* Automatic prefix caching is on by default in vLLM 0.33 for generative models; the teacher's identical leading
  rules hit it, and ``RequestOutput.num_cached_tokens`` is recorded per request to prove it.

Offline vLLM does not split the reasoning off: ``CompletionOutput.text`` holds the thought, ``</think>`` and the
answer (the reasoning parser only steers structured outputs and the server's API). Qwen3 thinking-2507 templates
put the opening ``<think>`` into the prompt, so we restore it in ``Generation.text``; then
``prompt_distill.task.Task.parse`` reads a thought cut by ``max_tokens`` as unfinished instead of taking a label
it merely considered.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

from .base import BatchCallback, Generation, GenerationParams
from .vllm_lora import VLLMLoraSettings, vllm_lora_settings

if TYPE_CHECKING:
    from vllm import SamplingParams
    from vllm.outputs import RequestOutput

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
# Chats per LLM.chat call: vLLM batches inside a call; results reach on_batch (and disk) after each call, so a
# crash loses at most this many requests while the GPU still sees a full batch.
DEFAULT_REQUESTS_PER_CALL = 1024
# After the thought Qwen3 writes a blank line before the answer; let the constrained answer keep it.
_NEWLINES_AFTER_THOUGHT = r"\n{0,2}"


def build_llm_kwargs(
    model: str,
    *,
    tensor_parallel_size: int = 1,
    seed: int = 0,
    reasoning_parser: str | None = None,
    max_model_len: int | None = None,
    gpu_memory_utilization: float = 0.9,
    lora: VLLMLoraSettings | None = None,
    **engine_kwargs,
) -> dict:
    """Keyword arguments for ``vllm.LLM``; every one becomes an ``EngineArgs`` field (a typo raises there).

    ``enable_prefix_caching`` is deliberately left unset: vLLM's default turns it on for generative models.
    ``max_model_len=None`` keeps vLLM's default (the model's context); pass prompt + max_tokens, or -1 to let vLLM
    pick the longest that fits in GPU memory.
    """
    kwargs: dict = {
        "model": model,
        "tensor_parallel_size": tensor_parallel_size,
        "seed": seed,
        "gpu_memory_utilization": gpu_memory_utilization,
    }
    if reasoning_parser:
        kwargs["reasoning_parser"] = reasoning_parser
    if max_model_len is not None:
        kwargs["max_model_len"] = max_model_len
    if lora is not None:
        kwargs.update(lora.engine_kwargs())
    kwargs.update(engine_kwargs)
    return kwargs


def answer_regex(labels: Sequence[str], answer_prefix: str, *, after_thought: bool) -> str:
    """The constrained final answer: ``answer_prefix`` then exactly one label, nothing else."""
    choices = "|".join(re.escape(label) for label in labels)
    lead = _NEWLINES_AFTER_THOUGHT if after_thought else ""
    return f"{lead}{re.escape(answer_prefix)}({choices})"


def build_sampling_params(params: GenerationParams, *, after_thought: bool) -> SamplingParams:
    """Every field set explicitly: our SamplingParams replace the model's generation_config defaults entirely.

    ``after_thought``: the engine runs a reasoning parser, so a constrained answer starts after ``</think>``.
    """
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    structured = None
    if params.answer_labels:
        structured = StructuredOutputsParams(
            regex=answer_regex(params.answer_labels, params.answer_prefix, after_thought=after_thought)
        )
    return SamplingParams(
        max_tokens=params.max_tokens,  # vLLM's default is 16
        temperature=params.temperature,
        top_p=params.top_p,
        top_k=0,  # off, as the temperature/top_p we set are meant alone (a model's generation_config may set 20)
        seed=params.seed,
        min_tokens=params.min_tokens,
        ignore_eos=params.min_tokens > 0,  # forced lengths (emulated thinking in the benchmark)
        structured_outputs=structured,
    )


def prompt_opens_thought(prompt: str) -> bool:
    """True when the rendered prompt ends inside a thought (Qwen3 thinking-2507 templates end with ``<think>``)."""
    return prompt.rfind(THINK_OPEN) > prompt.rfind(THINK_CLOSE)


def split_thought(raw: str, *, prompt_opened_thought: bool) -> tuple[str, str | None]:
    """``(text, reasoning)``: text always opens its thought with ``<think>``; reasoning is the thought, or None.

    The thought runs to the first ``</think>`` (where vLLM's reasoning parser ends reasoning and a constrained
    answer starts), or to the end of the output when it never closed.
    """
    stripped = raw.lstrip()
    if stripped.startswith(THINK_OPEN):
        text, body = raw, stripped[len(THINK_OPEN) :]
    elif prompt_opened_thought:
        text, body = f"{THINK_OPEN}\n{raw}", raw
    else:
        return raw, None
    return text, body.split(THINK_CLOSE, 1)[0].strip()


def to_generation(output: RequestOutput, *, prompt_opened_thought: bool, latency_s: float) -> Generation:
    """One finished ``RequestOutput`` (n=1) as a ``Generation`` with its token and cache accounting."""
    completion = output.outputs[0]
    text, reasoning = split_thought(completion.text, prompt_opened_thought=prompt_opened_thought)
    return Generation(
        text=text,
        prompt_tokens=len(output.prompt_token_ids or ()),
        completion_tokens=len(completion.token_ids),
        finish_reason=completion.finish_reason or "unfinished",
        latency_s=latency_s,
        reasoning=reasoning,
        cached_prompt_tokens=output.num_cached_tokens,
    )


def generate_in_calls(
    chat: Callable[..., list[RequestOutput]],
    chats: list[list[dict]],
    sampling_params: SamplingParams,
    *,
    prompt_opened_thought: bool,
    on_batch: BatchCallback | None = None,
    requests_per_call: int = DEFAULT_REQUESTS_PER_CALL,
) -> list[Generation]:
    """Run ``chat(conversations, sampling_params=...)`` over consecutive slices; hand each slice to ``on_batch``."""
    if requests_per_call < 1:
        raise ValueError(f"requests_per_call must be at least 1, got {requests_per_call}.")
    results: list[Generation] = []
    for start in range(0, len(chats), requests_per_call):
        part = chats[start : start + requests_per_call]
        began = time.perf_counter()
        outputs = chat(part, sampling_params=sampling_params)
        latency = time.perf_counter() - began
        if len(outputs) != len(part):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(part)} conversations.")
        generations = [
            to_generation(output, prompt_opened_thought=prompt_opened_thought, latency_s=latency) for output in outputs
        ]
        if on_batch is not None:
            on_batch(list(range(start, start + len(part))), generations)
        results.extend(generations)
    return results


def render_prompt(tokenizer, chat: list[dict], params: GenerationParams) -> str:
    """The prompt text ``LLM.chat`` sends: the tokenizer's chat template with the generation prompt."""
    return tokenizer.apply_chat_template(
        chat, tokenize=False, add_generation_prompt=True, **params.chat_template_kwargs
    )


def count_chat_tokens(tokenizer, chat: list[dict], params: GenerationParams) -> int:
    # The template writes the special tokens itself, as LLM.chat renders it (add_special_tokens=False).
    return len(tokenizer.encode(render_prompt(tokenizer, chat, params), add_special_tokens=False))


class VLLMEngine:
    """The Engine protocol on vLLM. Builds the model once; ``generate`` may be called many times (retries)."""

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        tensor_parallel_size: int = 1,
        seed: int = 0,
        reasoning_parser: str | None = None,
        adapter_path: str | None = None,
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.9,
        requests_per_call: int = DEFAULT_REQUESTS_PER_CALL,
        **engine_kwargs,
    ):
        from vllm import LLM

        self.reasoning_parser = reasoning_parser
        self.requests_per_call = requests_per_call
        # Raises AdapterNotServable (with the reason) before any weights load; the caller may merge instead.
        self.lora = vllm_lora_settings(adapter_path) if adapter_path else None
        self.lora_request = self.lora.lora_request() if self.lora else None
        self.llm_kwargs = build_llm_kwargs(
            model,
            tensor_parallel_size=tensor_parallel_size,
            seed=seed,
            reasoning_parser=reasoning_parser,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            lora=self.lora,
            **engine_kwargs,
        )
        self.llm = LLM(**self.llm_kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def count_prompt_tokens(self, chat: list[dict], params: GenerationParams) -> int:
        return count_chat_tokens(self.tokenizer, chat, params)

    def generate(
        self,
        chats: list[list[dict]],
        params: GenerationParams,
        on_batch: BatchCallback | None = None,
    ) -> list[Generation]:
        if not chats:
            return []
        # Every chat shares the template, so the first one tells whether outputs start inside a thought.
        opened = prompt_opens_thought(render_prompt(self.tokenizer, chats[0], params))
        if params.answer_labels and opened and not self.reasoning_parser:
            raise ValueError(
                "A constrained answer on a thinking model needs reasoning_parser (e.g. 'qwen3'): without it the "
                "constraint applies from the first token and the model cannot think."
            )
        chat = partial(
            self.llm.chat,
            lora_request=self.lora_request,
            chat_template_kwargs=params.chat_template_kwargs or None,
            use_tqdm=True,
        )
        return generate_in_calls(
            chat,
            chats,
            build_sampling_params(params, after_thought=bool(self.reasoning_parser)),
            prompt_opened_thought=opened,
            on_batch=on_batch,
            requests_per_call=self.requests_per_call,
        )
