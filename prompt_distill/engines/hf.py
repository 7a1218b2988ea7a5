"""The transformers engine: batched generation on CPU or GPU, with the shared prompt prefix computed once.

Every teacher request starts with the same long system prompt (thousands of tokens). Its KV cache is computed once
and copied into each batch, so a batch only runs the short per-request suffix. Padding goes between the prefix and
the suffix (prefix, pads, suffix): the prefix keeps the same positions in every row, and ``generate`` derives each
token's position from the attention mask (cumulative sum), so a suffix continues right after the prefix whatever
its padding. ``generate`` runs only the tokens past the cache's length (``_prefill`` slices ``input_ids`` by
``past_key_values.get_seq_length()``), and the causal mask is offset by that same length.

Label-constrained answers: when a reply yields no label, every label is scored as the continuation of
``reply + answer_prefix`` and the most likely one is appended (finish_reason "constrained"). All labels of all rows
of a batch are scored in one forward pass on top of the shared prefix: each row holds its context followed by
every label side by side, and a 4D attention mask lets a label token see the prefix, the context and its own
earlier tokens only, at positions that continue the context. The same pass gives the reply its
``label_probabilities`` (the scores renormalised over the labels), so the chosen label is their argmax.

Label probabilities of a free answer (``params.score_labels``): the labels' tokens (end of turn only where one
label's tokens begin another's, ``answer_label_tokens``) are scored at the reply's answer position
(``label_tokens.answer_lead``: after the closed thought, before "Final Answer:") in one more pass per batch, the
prompt prefix served from the shared cache; the reply's tokens are run again (generate's cache is gone by then):
one prefill of the reply, far less than generating it token by token.

The student as a classifier (``classify``): the same scorer (hf_scoring) with the labels' answer tokens
(label_tokens) after the prompt. Continuations form a trie and only its inner nodes run through the model, so
one-token labels cost one pass over the prompt keeping one position's logits. ``merge_adapter=True`` folds the
LoRA adapter into the weights, so that pass costs what the bare merged model costs.

Over 400 lines: one engine class with the cache and mask pieces it alone uses (the shared prefix, the attention
for a 4D mask on CPU), which read best next to the code that drives them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, DynamicCache, GenerationConfig
from transformers.cache_utils import Cache, DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from ..models import default_device, load_causal_lm, load_tokenizer
from .base import BatchCallback, EngineSettings, Generation, GenerationParams, LabelScores, ScoresCallback
from .hf_scoring import score_continuations
from .label_tokens import LabelTokens, Trie, answer_label_tokens, answer_lead, label_tokens, lead_ids, renormalised

# A shared prefix shorter than this is not worth a separate pass and a cache copy per batch.
MIN_SHARED_PREFIX = 16
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


@dataclass
class _Prompt:
    ids: list[int]
    opens_thought: bool  # the chat template ends the prompt with "<think>" (Qwen3 thinking-2507)


@dataclass
class _Reply:
    tokens: list[int]  # generated tokens, end-of-turn token excluded
    completion_tokens: int  # generated tokens, end-of-turn token included (as vLLM counts them)
    finish_reason: str
    text: str


@dataclass
class _AnswerPlan:
    context: list[int]  # prompt + reply + the tokens every label continuation starts with
    continuations: list[list[int]]  # per label: its remaining tokens, end-of-turn included
    added_text: str  # what goes between the reply and the label in the returned text


@dataclass
class _Scored:
    """A reply's label probabilities and what scoring them cost beyond the answer (Generation's scoring_*)."""

    probabilities: dict[str, float]
    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    seconds: float = 0.0

    def fields(self) -> dict:
        return {"label_probabilities": self.probabilities, "scoring_requests": self.requests,
                "scoring_prompt_tokens": self.prompt_tokens, "scoring_cached_tokens": self.cached_tokens,
                "scoring_s": self.seconds}


class _SharedPrefix:
    """The KV cache of a token prefix common to many prompts, kept at batch size 1."""

    def __init__(self, ids: list[int], layers: list[tuple[torch.Tensor, torch.Tensor]]):
        self.ids = ids
        self.layers = layers

    def covers(self, ids: list[int]) -> bool:
        return len(ids) > len(self.ids) and ids[: len(self.ids)] == self.ids

    def cache(self, batch_size: int, room: int):
        """A fresh cache for one batch, with space for ``room`` more tokens per row (generation writes into it)."""
        return _PrefixCache([_PreallocatedLayer(k, v, batch_size, room) for k, v in self.layers])


class _PreallocatedLayer(DynamicLayer):
    """A DynamicLayer that writes new tokens into a preallocated buffer instead of concatenating.

    DynamicLayer.update copies the whole cache at every step (torch.cat); with a prefix of thousands of tokens times
    the batch size, that copy costs more than the model itself on a CPU.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, batch_size: int, room: int):
        super().__init__()
        _, heads, length, dim = keys.shape
        self._key_buffer = keys.new_empty((batch_size, heads, length + room, dim))
        self._value_buffer = values.new_empty((batch_size, values.shape[1], length + room, values.shape[-1]))
        self._key_buffer[:, :, :length] = keys
        self._value_buffer[:, :, :length] = values
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
        self._set_length(length)

    def _set_length(self, length: int) -> None:
        self.length = length
        self.keys = self._key_buffer[:, :, :length]
        self.values = self._value_buffer[:, :, :length]

    def update(self, key_states, value_states, *args, **kwargs):
        end = self.length + key_states.shape[-2]
        if end > self._key_buffer.shape[-2]:  # out of room (never planned): grow like DynamicLayer
            self._key_buffer = torch.cat([self.keys, key_states], dim=-2)
            self._value_buffer = torch.cat([self.values, value_states], dim=-2)
        else:
            self._key_buffer[:, :, self.length : end] = key_states
            self._value_buffer[:, :, self.length : end] = value_states
        self._set_length(end)
        return self.keys, self.values


class _PrefixCache(DynamicCache):
    def __init__(self, layers):
        Cache.__init__(self, layers=layers)


def common_prefix_length(id_lists: list[list[int]]) -> int:
    first = id_lists[0]
    length = min(len(ids) for ids in id_lists)
    for ids in id_lists[1:]:
        position = 0
        while position < length and ids[position] == first[position]:
            position += 1
        length = position
    return length


class HFEngine:
    """Engine protocol over a transformers causal LM (optionally with a PEFT LoRA adapter)."""

    name = "transformers"
    tokenizer: object
    max_context_tokens: int | None
    notes: list[str]

    @classmethod
    def options(cls, settings: EngineSettings) -> dict:
        """Batch size, merging, and the loading flags transformers reads (dtype, trust_remote_code): the rest of
        ``settings`` is vLLM's (one device here; seeds come per call)."""
        return {"batch_size": settings.batch_size, "merge_adapter": settings.merge_adapter,
                **({"dtype": settings.dtype} if settings.dtype else {}),
                **({"trust_remote_code": True} if settings.trust_remote_code else {})}

    @classmethod
    def describe_loading(cls) -> str:
        return f"transformers on {default_device()}"

    def __init__(self, model, *, adapter_path=None, device=None, dtype=None, batch_size=8, reuse_prefix=True,
                 merge_adapter=False, trust_remote_code=False):
        """``merge_adapter``: fold the LoRA adapter into the weights in memory (PEFT merge_and_unload), so a
        forward pass costs what the bare merged model costs; if PEFT cannot merge it, the adapter stays as
        layers and ``notes`` says why."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model_name = str(model)
        self.device = device or default_device()
        self.tokenizer = load_tokenizer(self.model_name, padding_side="left", trust_remote_code=trust_remote_code)
        network = load_causal_lm(self.model_name, device=self.device, dtype=dtype, trust_remote_code=trust_remote_code)
        if str(self.device) == "cpu" and network.config._attn_implementation == "sdpa":
            network.set_attn_implementation(CPU_MASKED_GQA)
        self.notes = []
        self.adapter_path, self.merge_adapter = adapter_path, merge_adapter
        if adapter_path is not None:
            network = _with_adapter(network, adapter_path)
            if merge_adapter:
                network = self._merged(network)
        self.model = network.eval()
        # The context create_data checks each prompt against (transformers would run past it without an error).
        self.max_context_tokens = getattr(self.model.config, "max_position_embeddings", None)
        self.batch_size = batch_size
        self.reuse_prefix = reuse_prefix and _cache_is_shareable(self.model.config)
        self.end_token = self.tokenizer.eos_token_id
        self.eos_ids = model_end_of_turn_ids(self.model, self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id
        self._prefix: _SharedPrefix | None = None
        self._label_tokens: dict[tuple, LabelTokens] = {}

    # -- Engine protocol ------------------------------------------------------------------------------------
    def describe(self) -> str:
        adapter = "without adapter"
        if self.adapter_path:
            merged = self.merge_adapter and not self.notes
            adapter = "with the LoRA adapter " + ("merged into the weights" if merged else "(PEFT)")
        return f"transformers on {self.device}, batch size {self.batch_size}, {adapter}"

    def close(self) -> None:
        """Drop the model (its memory is freed once nothing else holds it)."""
        self.model = None

    def count_prompt_tokens(self, chat: list[dict], params: GenerationParams) -> int:
        return len(self._prompt(chat, params).ids)

    def generate(
        self, chats: list[list[dict]], params: GenerationParams, on_batch: BatchCallback | None = None
    ) -> list[Generation]:
        if params.min_tokens > params.max_tokens:
            raise ValueError(f"min_tokens ({params.min_tokens}) exceeds max_tokens ({params.max_tokens}).")
        prompts = [self._prompt(chat, params) for chat in chats]
        prefix = self._prefix_for([prompt.ids for prompt in prompts])
        shared = len(prefix.ids) if prefix else 0
        if params.seed is not None:
            torch.manual_seed(params.seed)
        results: list[Generation | None] = [None] * len(prompts)
        for batch in self._batches(prompts):
            began = time.perf_counter()
            batch_prompts = [prompts[i] for i in batch]
            scored: dict[int, _Scored] = {}
            with torch.inference_mode():
                replies = self._generate_batch(batch_prompts, prefix, params)
                if params.answer_labels:
                    replies, scored = self._constrain(batch_prompts, replies, prefix, params)
                if params.score_labels:
                    scored.update(self._score_answers(batch_prompts, replies, prefix, params, skip=scored))
            latency = time.perf_counter() - began
            generations = [
                Generation(
                    text=reply.text,
                    prompt_tokens=len(prompts[i].ids),
                    completion_tokens=reply.completion_tokens,
                    finish_reason=reply.finish_reason,
                    latency_s=latency,
                    cached_prompt_tokens=shared,
                    **(scored[j].fields() if j in scored else {}),
                )
                for j, (i, reply) in enumerate(zip(batch, replies, strict=True))
            ]
            for i, generation in zip(batch, generations, strict=True):
                results[i] = generation
            if on_batch is not None:
                on_batch(batch, generations)
        return results

    def classify(
        self, chats: list[list[dict]], labels: tuple[str, ...], on_batch: ScoresCallback | None = None
    ) -> list[LabelScores]:
        """P(label | chat) for every label, renormalised over the labels: one forward pass per batch, no
        generation loop. One-token labels cost the prompt alone (one position's logits kept); longer ones add
        their trie's inner tokens (hf_scoring)."""
        labels = tuple(labels)
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ValueError(f"classify needs two or more distinct labels, got {labels!r}.")
        params = GenerationParams(max_tokens=0)
        prompts = [self._prompt(chat, params) for chat in chats]
        prefix = self._prefix_for([prompt.ids for prompt in prompts])
        results: list[LabelScores | None] = [None] * len(prompts)
        for batch in self._batches(prompts):
            began = time.perf_counter()
            answers = [self._labels_after(chats[i], labels) for i in batch]
            plans = [_AnswerPlan(prompts[i].ids + list(a.shared), [list(c) for c in a.continuations], "")
                     for i, a in zip(batch, answers, strict=True)]
            with torch.inference_mode():
                rows = self._score(plans, prefix)
            latency = time.perf_counter() - began
            scores = [LabelScores(renormalised(labels, row), len(prompts[i].ids), latency)
                      for i, row in zip(batch, rows, strict=True)]
            for i, score in zip(batch, scores, strict=True):
                results[i] = score
            if on_batch is not None:
                on_batch(batch, scores)
        return results

    def reset_prefix_cache(self) -> None:
        """Forget the cached shared prefix (the benchmark times its computation)."""
        self._prefix = None

    # -- scoring --------------------------------------------------------------------------------------------
    def label_logprobs(self, chats: list[list[dict]], params: GenerationParams) -> list[dict[str, float]]:
        """Log-probability of each label (then end of turn) right after the prompt and ``answer_prefix``."""
        if not params.answer_labels:
            raise ValueError("label_logprobs needs params.answer_labels.")
        prompts = [self._prompt(chat, params) for chat in chats]
        prefix = self._prefix_for([prompt.ids for prompt in prompts])
        scores: list[dict[str, float]] = [{} for _ in prompts]
        for batch in self._batches(prompts):
            plans = [self._answer_plan(prompts[i], self._reply([], prompts[i]), params) for i in batch]
            with torch.inference_mode():
                batch_scores = self._score(plans, prefix)
            for i, row in zip(batch, batch_scores, strict=True):
                scores[i] = dict(zip(params.answer_labels, row, strict=True))
        return scores

    # -- internals ------------------------------------------------------------------------------------------
    def _prompt(self, chat: list[dict], params: GenerationParams) -> _Prompt:
        text = self.tokenizer.apply_chat_template(
            chat, add_generation_prompt=True, tokenize=False, **params.chat_template_kwargs
        )
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return _Prompt(ids=list(ids), opens_thought=text.rstrip().endswith(THINK_OPEN))

    def _labels_after(self, chat: list[dict], labels: tuple[str, ...]) -> LabelTokens:
        """The labels' answer tokens (label_tokens), derived once per label set and chat shape: what follows the
        prompt depends on the template and the roles, not on the sentence."""
        key = (labels, tuple(message["role"] for message in chat))
        if key not in self._label_tokens:
            self._label_tokens[key] = label_tokens(self.tokenizer, chat, labels, self.eos_ids)
        return self._label_tokens[key]

    def _merged(self, network):
        try:
            return network.merge_and_unload()
        except Exception as error:  # e.g. a LoRA on MoE target_parameters that PEFT cannot fold in
            self.notes.append(f"The LoRA adapter could not be merged into the weights ({type(error).__name__}: "
                              f"{error}); it runs as PEFT adapter layers.")
            return network

    def _batches(self, prompts: list[_Prompt]) -> list[list[int]]:
        # Longest first: similar lengths share a batch (less padding) and an out-of-memory shows at once.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i].ids), reverse=True)
        return [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]

    def _prefix_for(self, id_lists: list[list[int]]) -> _SharedPrefix | None:
        """The cached prefix if it still fits these prompts, else a new one from their common prefix, else None."""
        if not self.reuse_prefix or not id_lists:
            return None
        common = 0
        if len(id_lists) > 1:
            # Every prompt keeps at least one token of its own: its last position yields the first logits.
            common = min(common_prefix_length(id_lists), min(len(ids) for ids in id_lists) - 1)
        current = self._prefix
        fits = current is not None and all(current.covers(ids) for ids in id_lists)
        if fits and common < len(current.ids) + MIN_SHARED_PREFIX:
            return current
        if common >= MIN_SHARED_PREFIX:
            self._prefix = self._compute_prefix(id_lists[0][:common])
            return self._prefix
        return current if fits else None

    def _compute_prefix(self, ids: list[int]) -> _SharedPrefix:
        cache = DynamicCache(config=self.model.config)
        with torch.inference_mode():
            self.model(
                input_ids=torch.tensor([ids], device=self.device),
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
        return _SharedPrefix(list(ids), [(layer.keys, layer.values) for layer in cache.layers])

    def _generate_batch(self, prompts: list[_Prompt], prefix: _SharedPrefix | None, params) -> list[_Reply]:
        if params.max_tokens == 0:
            return [self._reply([], prompt) for prompt in prompts]
        shared = len(prefix.ids) if prefix else 0
        suffixes = [prompt.ids[shared:] for prompt in prompts]
        width = max(len(suffix) for suffix in suffixes)
        prefix_ids = prefix.ids if prefix else []
        input_ids = [prefix_ids + [self.pad_id] * (width - len(s)) + s for s in suffixes]
        mask = [[1] * shared + [0] * (width - len(s)) + [1] * len(s) for s in suffixes]
        room = width + params.max_tokens
        extra = {"past_key_values": prefix.cache(len(prompts), room)} if prefix else {}
        output = self.model.generate(
            input_ids=torch.tensor(input_ids, device=self.device),
            attention_mask=torch.tensor(mask, device=self.device),
            generation_config=self._generation_config(params),
            **extra,
        )
        new_tokens = output[:, shared + width :].tolist()
        return [self._reply(tokens, prompt) for tokens, prompt in zip(new_tokens, prompts, strict=True)]

    def _generation_config(self, params: GenerationParams):
        """Everything explicit, so the model's generation_config.json defaults (top_k=20 ...) never leak in."""
        # Greedy decoding ignores temperature/top_p/top_k; setting them anyway only earns warnings. top_k 0 is off
        # for transformers; -1 (off for vLLM) would be refused by its TopKLogitsWarper.
        sampling = {"temperature": params.temperature, "top_p": params.top_p, "top_k": max(params.top_k, 0)}
        return GenerationConfig(
            max_new_tokens=params.max_tokens,
            min_new_tokens=params.min_tokens,
            do_sample=params.temperature > 0,
            repetition_penalty=1.0,
            eos_token_id=list(self.eos_ids),
            pad_token_id=self.pad_id,
            return_dict_in_generate=False,
            **(sampling if params.temperature > 0 else {}),
        )

    def _reply(self, tokens: list[int], prompt: _Prompt) -> _Reply:
        kept, used, reason = tokens, len(tokens), "length"
        for position, token in enumerate(tokens):
            if token in self.eos_ids:  # the rest of the row is padding
                kept, used, reason = tokens[:position], position + 1, "stop"
                break
        text = self.tokenizer.decode(kept, skip_special_tokens=False)
        if prompt.opens_thought and not text.lstrip().startswith(THINK_OPEN):
            # The template opened the thought; writing the tag keeps a thought cut by max_tokens recognisable as
            # one (the task parser then reads no answer from it), as the vLLM engine does.
            text = f"{THINK_OPEN}\n{text}"
        return _Reply(kept, used, reason, text)

    def _answered(self, text: str, params: GenerationParams) -> bool:
        if params.answer_parser is not None:
            return params.answer_parser(text) in params.answer_labels
        answer = text.rsplit(THINK_CLOSE, 1)[-1].strip()
        targets = [(params.answer_prefix + label).strip() for label in params.answer_labels]
        if params.answer_prefix.strip():
            return any(answer.endswith(target) for target in targets)
        return answer in targets

    def _constrain(self, prompts, replies: list[_Reply], prefix, params) -> tuple[list[_Reply], dict[int, _Scored]]:
        """Answer every reply that yields no label with the most probable label; the label probabilities of that
        same pass come back per reply (by its position in ``replies``)."""
        todo = [j for j, reply in enumerate(replies) if not self._answered(reply.text, params)]
        if not todo:
            return replies, {}
        plans = [self._answer_plan(prompts[j], replies[j], params) for j in todo]
        labels = params.answer_labels
        scored = {}
        for j, plan, row in zip(todo, plans, self._score(plans, prefix), strict=True):
            best = max(range(len(labels)), key=lambda k: row[k])  # the first label wins a tie
            reply = replies[j]
            replies[j] = _Reply(
                reply.tokens,
                reply.completion_tokens,
                "constrained",
                reply.text + plan.added_text + labels[best],
            )
            scored[j] = _Scored(renormalised(labels, row))
        return replies, scored

    def _score_answers(self, prompts, replies: list[_Reply], prefix, params, skip) -> dict[int, _Scored]:
        """``params.score_labels`` at the answer position of every answered reply not in ``skip``: one more pass
        over the batch's prompts, replies up to their answers and the labels (hf_scoring)."""
        labels = params.score_labels
        plans = {}
        for j, (prompt, reply) in enumerate(zip(prompts, replies, strict=True)):
            if j in skip or (params.answer_parser is not None and params.answer_parser(reply.text) not in labels):
                continue
            raw = self.tokenizer.decode(reply.tokens, skip_special_tokens=False)
            lead = answer_lead(raw, params.answer_prefix, prompt_opened_thought=prompt.opens_thought)
            if lead is None:
                continue
            answer = answer_label_tokens(self.tokenizer, params.answer_prefix, labels, self.end_token,
                                         always_end=False)
            context = prompt.ids + lead_ids(self.tokenizer, raw, reply.tokens, lead) + list(answer.shared)
            plans[j] = _AnswerPlan(context, [list(c) for c in answer.continuations], params.answer_prefix)
        if not plans:
            return {}
        began = time.perf_counter()
        rows = self._score(list(plans.values()), prefix)
        seconds = time.perf_counter() - began
        cached = len(prefix.ids) if prefix is not None and all(prefix.covers(p.context) for p in plans.values()) else 0
        return {j: _Scored(renormalised(labels, row), requests=1,
                           prompt_tokens=len(plan.context) + len(Trie.of(plan.continuations).inner()),
                           cached_tokens=cached, seconds=seconds)
                for (j, plan), row in zip(plans.items(), rows, strict=True)}

    def _answer_plan(self, prompt: _Prompt, reply: _Reply, params: GenerationParams) -> _AnswerPlan:
        thought_open = THINK_CLOSE not in reply.text and (THINK_OPEN in reply.text or prompt.opens_thought)
        if thought_open:  # cut inside the thought: close it, the answer comes after
            separator = f"\n{THINK_CLOSE}\n\n"
        elif reply.text and not reply.text.endswith("\n"):
            separator = "\n"
        else:
            separator = ""
        added = separator + params.answer_prefix
        # Encode prefix and label together so the boundary tokenizes naturally (": en" -> ":", " en"); the tokens
        # all continuations share are context, the rest is what each label is scored on.
        answer = answer_label_tokens(self.tokenizer, added, params.answer_labels, self.end_token, always_end=True)
        return _AnswerPlan(
            context=prompt.ids + reply.tokens + list(answer.shared),
            continuations=[list(c) for c in answer.continuations],
            added_text=added,
        )

    def _score(self, plans: list[_AnswerPlan], prefix: _SharedPrefix | None) -> list[list[float]]:
        """Summed log-probability of every continuation of every plan, in one forward pass (hf_scoring)."""
        shared = len(prefix.ids) if prefix is not None and all(prefix.covers(p.context) for p in plans) else 0
        return score_continuations(
            self.model, [plan.context for plan in plans], [plan.continuations for plan in plans], shared=shared,
            cache_for=prefix.cache if shared else None, pad_id=self.pad_id, device=self.device,
        )


CPU_MASKED_GQA = "sdpa_masked_gqa"


def _sdpa_masked_gqa(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """SDPA that keeps grouped-query attention native when a padding mask is present (CPU only).

    transformers' sdpa path repeats the key/value heads whenever there is a mask (masked GQA falls back to a slow
    kernel on CUDA). On a CPU that copy of a thousands-of-tokens cache at every step costs more than the model,
    while torch's CPU kernel handles ``enable_gqa`` with a mask directly.
    """
    if attention_mask is None or key.shape[1] == query.shape[1]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    output = F.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, enable_gqa=True
    )
    return output.transpose(1, 2).contiguous(), None


AttentionInterface.register(CPU_MASKED_GQA, _sdpa_masked_gqa)
AttentionMaskInterface.register(CPU_MASKED_GQA, sdpa_mask)


def _with_adapter(network, adapter_path):
    from peft import PeftModel

    path = Path(adapter_path).expanduser()
    if str(adapter_path).startswith((".", "/", "~")) and not path.is_dir():
        raise FileNotFoundError(f"adapter_path {adapter_path}: no such folder.")
    return PeftModel.from_pretrained(network, str(path) if path.is_dir() else adapter_path)


def model_end_of_turn_ids(model, tokenizer) -> tuple[int, ...]:
    """The tokens that end a reply for this model: the tokenizer's EOS and its generation config's (training's soft
    targets score the labels with them too)."""
    configured = getattr(model.generation_config, "eos_token_id", None)
    configured = configured if isinstance(configured, list) else [configured]
    ids = [tokenizer.eos_token_id, *configured]
    return tuple(dict.fromkeys(i for i in ids if i is not None))


def _cache_is_shareable(config) -> bool:
    """Prefix reuse copies plain full-attention layers; sliding-window or linear-attention caches are left alone."""
    return all(type(layer) is DynamicLayer for layer in DynamicCache(config=config).layers)
